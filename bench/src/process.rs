//! Processes under test: spawned with their output in a log file, killed when dropped, and
//! measured from /proc: CPU time (utime + stime of /proc/PID/stat) and memory (VmRSS and VmHWM of
//! /proc/PID/status).

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::Result;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Child {
    name: String,
    child: std::process::Child,
    ticks_per_second: f64,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most that was ever resident.
    pub peak_kib: u64,
}

impl Child {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path, ticks_per_second: f64) -> Result<Child> {
        let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Child {
            name: name.to_string(),
            child,
            ticks_per_second,
        })
    }

    pub fn ticks_per_second(&self) -> f64 {
        self.ticks_per_second
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited: {status}", self.name).into()),
            None => Ok(()),
        }
    }

    /// CPU seconds used so far, user and system.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds_of(self.pid(), self.ticks_per_second)
    }

    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        memory(&status)
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds process `pid` has used so far, user and system.
pub fn cpu_seconds_of(pid: u32, ticks_per_second: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(cpu_ticks(&stat)? as f64 / ticks_per_second)
}

/// CPU seconds this process (the bench: farm and API test server) has used so far.
pub fn own_cpu_seconds(ticks_per_second: f64) -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_ticks(&stat).ok())
        .map_or(0.0, |t| t as f64 / ticks_per_second)
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat; counted after the `)` that ends the
/// command name, which may itself hold spaces).
fn cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()
            .map_err(|e| format!("/proc/PID/stat field {n}: {e}"))?)
    };
    Ok(field(14)? + field(15)?)
}

fn memory(status: &str) -> Result<Memory> {
    let kib = |key: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .ok_or_else(|| format!("no {key} in /proc/PID/status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("malformed /proc/PID/status")?
            .parse::<u64>()?)
    };
    Ok(Memory {
        rss_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:")?,
    })
}

/// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`; 100, the value on Linux, if
/// getconf is missing).
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The soft and hard limits on open files of this process, from /proc/self/limits.
pub fn open_files_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| if v == "unlimited" { Ok(u64::MAX) } else { v.parse() });
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

/// Re-executes this program through `sh -c 'ulimit -n <hard>'` when the soft limit on open files
/// is below `needed` and the hard limit allows more (no unsafe code, no libc). Returns only when
/// no re-exec was needed or possible.
pub fn raise_open_files_limit(needed: u64) -> Result<()> {
    const MARK: &str = "APPHEALTH_BENCH_RAISED_NOFILE";
    let Some((soft, hard)) = open_files_limits() else {
        return Ok(());
    };
    if soft >= needed || hard <= soft || std::env::var_os(MARK).is_some() {
        if soft < needed {
            eprintln!(
                "bench: only {soft} open files allowed (hard limit {hard}); {needed} are needed for the farm"
            );
        }
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let error = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    Err(format!("cannot re-execute with a higher open-files limit: {error}").into())
}

/// Polls `check` every 100ms until it returns Some, or fails with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_memory() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 70 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat).unwrap(), 320);
        let status = "Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            memory(status).unwrap(),
            Memory {
                rss_kib: 10240,
                peak_kib: 20480
            }
        );
    }

    #[test]
    fn measures_this_process() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(memory(&status).unwrap().rss_kib > 0);
        assert!(open_files_limits().is_some());
    }
}
