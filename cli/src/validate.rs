//! Checks on what the user typed, done before any API call so that bad input creates nothing: the same rules as
//! the CRD schemas (crds/src/schema.rs and job.rs) and the gateway's tool arguments.

use crate::error::{CliError, Result};

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A session name: a DNS-1123 label of at most crds::MAX_SESSION_NAME characters.
pub fn session_name(what: &str, name: &str) -> Result<()> {
    if name.chars().count() > crds::MAX_SESSION_NAME {
        return Err(CliError::Invalid(format!(
            "{what} '{name}' is {} characters long; at most {} are allowed",
            name.chars().count(),
            crds::MAX_SESSION_NAME
        )));
    }
    if !is_dns_label(name) {
        return Err(CliError::Invalid(format!(
            "{what} '{name}' is not valid: use lowercase letters, digits and '-', starting and ending with a \
             letter or digit (for example 'fix-login-bug')"
        )));
    }
    Ok(())
}

/// A blueprint name: a DNS-1123 subdomain.
pub fn blueprint_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 253 || !name.split('.').all(is_dns_label) {
        return Err(CliError::Invalid(format!(
            "blueprint '{name}' is not a valid name: use lowercase letters, digits, '-' and '.'"
        )));
    }
    Ok(())
}

/// A prompt says something and fits: 1 to crds::MAX_PROMPT characters.
pub fn prompt(prompt: &str) -> Result<()> {
    if prompt.trim().is_empty() {
        return Err(CliError::Invalid(
            "the prompt is empty: give one with -p PROMPT or -f FILE".into(),
        ));
    }
    let len = prompt.chars().count();
    if len > crds::MAX_PROMPT {
        return Err(CliError::Invalid(format!(
            "the prompt is {len} characters long; at most {} are allowed",
            crds::MAX_PROMPT
        )));
    }
    Ok(())
}

/// The working directory stays inside the session workspace: 1 to 1024 characters, no `..` segment.
pub fn project_dir(dir: &str) -> Result<()> {
    if dir.is_empty() || dir.chars().count() > 1024 {
        return Err(CliError::Invalid(
            "--project-dir must be 1 to 1024 characters".into(),
        ));
    }
    if dir.split('/').any(|s| s == "..") {
        return Err(CliError::Invalid(format!(
            "--project-dir '{dir}' must stay inside the workspace: no '..' segments"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_crd_patterns() {
        for good in ["a", "fix-bug-2", &"a".repeat(60)] {
            assert!(session_name("session", good).is_ok(), "{good}");
        }
        for bad in ["", "Fix", "-a", "a-", "a_b", "a.b", &"a".repeat(61)] {
            assert!(session_name("session", bad).is_err(), "{bad}");
        }
        assert!(blueprint_name("claude.v2").is_ok());
        assert!(blueprint_name("Claude").is_err());
        assert!(blueprint_name("a..b").is_err());
    }

    #[test]
    fn prompts_and_project_dirs() {
        assert!(prompt("do it").is_ok());
        assert!(prompt("  \n").is_err());
        assert!(prompt(&"x".repeat(crds::MAX_PROMPT + 1)).is_err());
        assert!(project_dir("repo/sub").is_ok());
        assert!(project_dir("repo/../..").is_err());
        assert!(project_dir("").is_err());
    }
}
