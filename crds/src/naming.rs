//! Names of the AgentJobs the gateway and `kubectl agents` create: `{session, cut to 54}-{unix millis in base36, 8
//! characters}`. Fixed-width base36 millis sort like their creation times, so the operator's (creationTimestamp, name)
//! order keeps jobs of one session in the order they were asked for, even within one second, whoever asked.

/// Characters of the session name kept in a job name: 54 + '-' + 8 = 63, the longest object name that is also a
/// valid label value.
pub const SESSION_PART: usize = 54;
const SUFFIX_LEN: usize = 8;

pub fn job_name(session: &str, unix_millis: u64) -> String {
    let cut: String = session.chars().take(SESSION_PART).collect();
    format!("{cut}-{}", base36(unix_millis, SUFFIX_LEN))
}

/// `n` in lowercase base36, left-padded with zeros to `width`. 36^8 ms reaches the year 2059.
fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(width);
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
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
    fn names_carry_the_session_and_fixed_width_millis() {
        assert_eq!(job_name("fix-bug", 0), "fix-bug-00000000");
        assert_eq!(job_name("fix-bug", 35), "fix-bug-0000000z");
        assert_eq!(job_name("s", 1_767_225_600_000), "s-mjuohs00");
    }

    #[test]
    fn long_sessions_are_cut_to_fit_63() {
        let name = job_name(&"a".repeat(60), 1_767_225_600_000);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"a".repeat(54)));
    }

    #[test]
    fn later_millis_sort_later() {
        let mut last = job_name("s", 1_700_000_000_000);
        for ms in [
            1_700_000_000_001,
            1_700_000_000_999,
            1_800_000_000_000,
            2_800_000_000_000,
        ] {
            let next = job_name("s", ms);
            assert!(next > last, "{next} > {last}");
            last = next;
        }
    }
}
