//! Names of the AgentJobs this command creates, by the gateway's rule (`mcp-gateway/src/naming.rs`):
//! `{session, cut to 54}-{unix millis in base36, 8 characters}`, so jobs made by people and by agents on one
//! session sort in the order they were asked for.

const SESSION_PART: usize = 54;
const SUFFIX_LEN: usize = 8;

pub fn job_name(session: &str, unix_millis: u64) -> String {
    let cut: String = session.chars().take(SESSION_PART).collect();
    let mut n = unix_millis;
    let mut digits = Vec::with_capacity(SUFFIX_LEN);
    while n > 0 || digits.len() < SUFFIX_LEN {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    digits.reverse();
    format!("{cut}-{}", String::from_utf8(digits).expect("ASCII digits"))
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_gateways() {
        assert_eq!(job_name("fix-bug", 0), "fix-bug-00000000");
        assert_eq!(job_name("s", 1_767_225_600_000), "s-mjuohs00");
        assert_eq!(job_name(&"a".repeat(60), 1_767_225_600_000).len(), 63);
    }
}
