//! The one reader of `/proc/<pid>/status` memory figures (Linux), for the
//! benches and examples that report resident memory.

/// Memory figures of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `VmRSS`: resident set size.
    pub vm_rss: u64,
    /// `VmHWM`: the highest resident set size so far.
    pub vm_hwm: u64,
    /// `RssAnon`: resident anonymous memory (heap, stacks), without
    /// file-backed pages such as the executable's code.
    pub rss_anon: u64,
}

impl ProcStatus {
    /// Parses the text of a `/proc/<pid>/status` file; `None` if a field is
    /// missing or unreadable.
    pub fn parse(status: &str) -> Option<ProcStatus> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        Some(ProcStatus {
            vm_rss: field("VmRSS")?,
            vm_hwm: field("VmHWM")?,
            rss_anon: field("RssAnon")?,
        })
    }
}

/// Reads the memory figures of process `pid` (`std::process::id()` for the
/// calling process) from `/proc/<pid>/status`.
pub fn proc_status(pid: u32) -> std::io::Result<ProcStatus> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)?;
    ProcStatus::parse(&status)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS, VmHWM or RssAnon in {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields_into_bytes() {
        let text = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nRssAnon:\t  512 kB\nRssFile:\t 512 kB\n";
        assert_eq!(
            ProcStatus::parse(text),
            Some(ProcStatus {
                vm_rss: 1 << 20,
                vm_hwm: 2 << 20,
                rss_anon: 512 << 10,
            })
        );
        assert_eq!(ProcStatus::parse("VmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = proc_status(std::process::id()).expect("/proc/<pid>/status");
        assert!(s.vm_rss > 0 && s.vm_hwm >= s.vm_rss && s.rss_anon > 0);
    }
}
