//! Checks on tool arguments, done before any API call: a bad name or prompt costs the agent one tool error with a
//! precise message, never a half-created job or an admission error it cannot read.

use crate::error::ToolError;

/// Longest wait of get_agent_session_status.
pub const MAX_WAIT_SECONDS: i64 = 300;

/// A session name is a DNS-1123 label of at most crds::MAX_SESSION_NAME characters (it becomes part of object
/// names and a label value).
pub fn session_name(field: &str, name: &str) -> Result<(), ToolError> {
    if name.is_empty() {
        return Err(ToolError::Invalid(format!("{field} must not be empty")));
    }
    if name.chars().count() > crds::MAX_SESSION_NAME {
        return Err(ToolError::Invalid(format!(
            "{field} '{name}' is {} characters long; at most {} are allowed",
            name.chars().count(),
            crds::MAX_SESSION_NAME
        )));
    }
    if !is_dns_label(name) {
        return Err(ToolError::Invalid(format!(
            "{field} '{name}' is not valid: use lowercase letters, digits and '-', starting and ending with a \
             letter or digit (for example 'fix-login-bug')"
        )));
    }
    Ok(())
}

/// Prompts are 1 to crds::MAX_PROMPT characters and must say something.
pub fn prompt(prompt: &str) -> Result<(), ToolError> {
    if prompt.trim().is_empty() {
        return Err(ToolError::Invalid(
            "prompt must not be empty: say what the agent should do".into(),
        ));
    }
    let len = prompt.chars().count();
    if len > crds::MAX_PROMPT {
        return Err(ToolError::Invalid(format!(
            "prompt is {len} characters long; at most {} are allowed",
            crds::MAX_PROMPT
        )));
    }
    Ok(())
}

/// Blueprint names are Kubernetes object names (DNS-1123 subdomains).
pub fn blueprint_name(name: &str) -> Result<(), ToolError> {
    let valid = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label);
    if !valid {
        return Err(ToolError::Invalid(format!(
            "agent_blueprint_name '{name}' is not a valid blueprint name: use lowercase letters, digits, '-' and \
             '.'; see list_agent_blueprints for the available ones"
        )));
    }
    Ok(())
}

/// The working directory stays inside the session workspace, as admission requires.
pub fn project_dir(dir: &str) -> Result<(), ToolError> {
    if dir.is_empty() || dir.chars().count() > 1024 {
        return Err(ToolError::Invalid(
            "project_dir must be 1 to 1024 characters long".into(),
        ));
    }
    if dir.split('/').any(|s| s == "..") {
        return Err(ToolError::Invalid(format!(
            "project_dir '{dir}' must stay inside the workspace: no '..' segments"
        )));
    }
    Ok(())
}

pub fn wait_seconds(seconds: i64) -> Result<(), ToolError> {
    if !(0..=MAX_WAIT_SECONDS).contains(&seconds) {
        return Err(ToolError::Invalid(format!(
            "wait_seconds must be between 0 and {MAX_WAIT_SECONDS}, got {seconds}"
        )));
    }
    Ok(())
}

pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(inner_ok)
        && edge_ok(&bytes[0])
        && edge_ok(&bytes[bytes.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_dns_labels_of_at_most_60() {
        for ok in ["a", "fix-login-bug", "a1", &"x".repeat(60)] {
            assert!(session_name("session_name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Upper",
            "-lead",
            "trail-",
            "under_score",
            "dot.ted",
            "spa ce",
            "ünï",
            &"x".repeat(61),
        ] {
            let err = session_name("session_name", bad).unwrap_err().to_string();
            assert!(err.starts_with("Error: session_name"), "{bad}: {err}");
        }
    }

    #[test]
    fn prompts_must_say_something_and_stay_bounded() {
        assert!(prompt("do it").is_ok());
        assert!(prompt(&"é".repeat(crds::MAX_PROMPT)).is_ok());
        assert!(
            prompt("")
                .unwrap_err()
                .to_string()
                .contains("prompt must not be empty")
        );
        assert!(prompt(" \n\t").is_err());
        assert!(
            prompt(&"x".repeat(crds::MAX_PROMPT + 1))
                .unwrap_err()
                .to_string()
                .contains("100000")
        );
    }

    #[test]
    fn blueprint_names_are_subdomains() {
        assert!(blueprint_name("coder").is_ok());
        assert!(blueprint_name("coder.v2").is_ok());
        assert!(blueprint_name("Coder").is_err());
        assert!(blueprint_name("").is_err());
        assert!(blueprint_name("a..b").is_err());
    }

    #[test]
    fn project_dirs_stay_in_the_workspace() {
        assert!(project_dir("src/app").is_ok());
        assert!(project_dir("../etc").is_err());
        assert!(project_dir("a/../../b").is_err());
        assert!(project_dir("").is_err());
    }

    #[test]
    fn wait_seconds_is_bounded_to_300() {
        assert!(wait_seconds(0).is_ok());
        assert!(wait_seconds(300).is_ok());
        assert!(
            wait_seconds(301)
                .unwrap_err()
                .to_string()
                .contains("between 0 and 300, got 301")
        );
        assert!(wait_seconds(-1).is_err());
    }
}
