//! The component processes: started detached (their own process group, output to a log file), found
//! again by pid after the launcher has exited, and stopped with SIGTERM, then SIGKILL.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How one component was started: enough to find it again, stop it and start it the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    #[serde(default)]
    pub pid: u32,
}

impl Spec {
    /// Starts the process, its output appended to `log`, in a process group of its own so that a
    /// Ctrl-C in the terminal that ran `make cluster` does not reach it.
    pub fn spawn(&mut self) -> Result<Child, Error> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::io(&self.log, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&self.log, e))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(&self.program, e))?;
        self.pid = child.id();
        Ok(child)
    }

    /// Whether the process that was started is still running: the pid is alive (not a zombie) and
    /// runs this program, so a reused pid is never mistaken for it.
    pub fn running(&self) -> bool {
        running(self.pid, &self.program)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone. Not ours (or gone
    /// already): nothing to do.
    pub fn stop(&self, grace: Duration) {
        if !self.running() {
            return;
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + grace;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running() {
            let _ = kill_process(pid, Signal::KILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The line of the log that most likely says why the component stopped.
    pub fn reason(&self) -> String {
        reason(&self.log)
    }
}

fn running(pid: u32, program: &Path) -> bool {
    if pid == 0 {
        return false;
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X")) {
        return false;
    }
    let exe = std::fs::read_link(proc.join("exe")).ok();
    let program = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    exe.is_some_and(|exe| exe == program)
}

/// The last line of `log` that reports an error (klog's `E`/`F` lines, etcd's JSON error levels, or
/// any line saying error, fatal or failed), else its last line.
pub fn reason(log: &Path) -> String {
    let Ok(file) = File::open(log) else {
        return format!("no log at {}", log.display());
    };
    let mut last = String::new();
    let mut last_error = None;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if says_error(&line) {
            last_error = Some(line.clone());
        }
        last = line;
    }
    let line = last_error.unwrap_or(last);
    if line.is_empty() {
        "its log is empty".into()
    } else {
        line
    }
}

fn says_error(line: &str) -> bool {
    let klog = line.len() > 5
        && matches!(line.as_bytes()[0], b'E' | b'F')
        && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit);
    let lower = line.to_ascii_lowercase();
    klog || lower.contains("\"level\":\"fatal\"")
        || lower.contains("\"level\":\"error\"")
        || lower.contains("\"level\":\"panic\"")
        || lower.starts_with("error")
        || lower.contains(" error:")
        || lower.contains("fatal")
        || lower.contains("failed to")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_prefers_the_last_error_line() {
        let dir = std::env::temp_dir().join(format!("apphealth-cluster-reason-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.log");
        std::fs::write(
            &log,
            "I1205 10:00:00.000000 1 server.go:1] starting\n\
             E1205 10:00:01.000000 1 run.go:72] \"command failed\" err=\"listen tcp 127.0.0.1:6443: bind: address already in use\"\n\
             I1205 10:00:01.000000 1 server.go:2] shutting down\n",
        )
        .unwrap();
        assert!(reason(&log).contains("address already in use"));
        std::fs::write(&log, "plain line\nlast line\n").unwrap();
        assert_eq!(reason(&log), "last line");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"ok\"}\n{\"level\":\"fatal\",\"msg\":\"discovery failed\"}\n{\"level\":\"info\",\"msg\":\"bye\"}\n",
        )
        .unwrap();
        assert!(reason(&log).contains("discovery failed"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(reason(&log).starts_with("no log at"));
    }

    #[test]
    fn a_pid_running_another_program_is_not_ours() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        assert!(running(me, &exe));
        assert!(!running(me, Path::new("/bin/true")));
        assert!(!running(0, &exe));
    }
}
