//! The one module that runs external programs. Every failure names the command line, its exit status
//! and its stderr. Secrets go to a program's standard input, never to its arguments or environment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// A program that failed, or could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}): {}", if stderr.is_empty() { "no message" } else { stderr.as_str() })]
    Failed {
        /// The command line.
        command: String,
        /// Exit status, as printed.
        status: String,
        /// The exit code, when the program exited rather than being killed.
        code: Option<i32>,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

/// Programs given paths the user wrote, which may be relative to where nix-dabei was started (a flake
/// `.#web1`, a key file, a kernel image): they run there.
const IN_CALLERS_FOLDER: &[&str] = &["nix", "nix-instantiate", "nixos-install", "ssh", "kexec"];

/// The working directory of a program: for all but [`IN_CALLERS_FOLDER`], an empty directory of
/// nix-dabei's own (mode 0500), so that a relative name a program resolves against it (mkfs.xfs's
/// `logdev=loop43`) names nothing rather than a device beside wherever nix-dabei was started. The plan's
/// validation refuses such options too; this holds for what it does not know.
fn working_directory(program: &str) -> std::path::PathBuf {
    if IN_CALLERS_FOLDER.contains(&program) {
        return std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    }
    empty_directory().to_path_buf()
}

/// The empty directory of [`working_directory`], made once.
fn empty_directory() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = nix::unistd::getuid().as_raw();
        let shared = std::env::temp_dir().join(format!("nix-dabei-empty-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o500).create(&shared);
        // Ours, not writable, and empty: or one for this process alone.
        let fit = std::fs::symlink_metadata(&shared)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o222 == 0)
            && std::fs::read_dir(&shared).is_ok_and(|mut entries| entries.next().is_none());
        if fit {
            return shared;
        }
        let own = std::env::temp_dir().join(format!("nix-dabei-empty-{uid}-{}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o500).create(&own) {
            Ok(()) => own,
            // Where no folder can be made, the root: a relative name there is refused by the plan's checks.
            Err(_) => std::path::PathBuf::from("/"),
        }
    })
}

fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ")
}

/// Runs a program with `input` on its standard input; returns its standard output.
pub fn run(program: &str, args: &[String], input: Option<&[u8]>) -> Result<String, CommandError> {
    let command = command_line(program, args);
    let mut child = Command::new(program)
        .current_dir(working_directory(program))
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that exits without reading its input closes the pipe; its status says why.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    stdout_of(command, output)
}

/// A finished program's standard output, or its failure.
fn stdout_of(command: String, output: std::process::Output) -> Result<String, CommandError> {
    if !output.status.success() {
        return Err(CommandError::Failed {
            command,
            status: output.status.to_string(),
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a program with the contents of `file` on its standard input (streamed, not read into memory);
/// returns its standard output.
pub fn run_with_file_input(program: &str, args: &[String], file: &std::path::Path) -> Result<String, CommandError> {
    let command = command_line(program, args);
    let input = std::fs::File::open(file).map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    let output = Command::new(program)
        .current_dir(working_directory(program))
        .args(args)
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    stdout_of(command, output)
}

/// Runs a program, handing each line it prints (stdout and stderr) to `on_line` as it comes.
pub fn stream(program: &str, args: &[String], on_line: &mut dyn FnMut(&str)) -> Result<(), CommandError> {
    stream_with_env(program, args, &[], on_line)
}

/// [`stream`] with variables added to the program's environment (settings, never secrets).
pub fn stream_with_env(
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    on_line: &mut dyn FnMut(&str),
) -> Result<(), CommandError> {
    let command = command_line(program, args);
    let mut child = Command::new(program)
        .current_dir(working_directory(program))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    let stderr = child.stderr.take();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    let err_sender = sender.clone();
    let stderr_thread = std::thread::spawn(move || {
        let mut collected = String::new();
        if let Some(pipe) = stderr {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                collected.push_str(&line);
                collected.push('\n');
                let _ = err_sender.send(line);
            }
        }
        collected
    });
    if let Some(stdout) = child.stdout.take() {
        let out_sender = sender;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_sender.send(line);
            }
        });
    }
    for line in receiver {
        on_line(&line);
    }
    let stderr_text = stderr_thread.join().unwrap_or_default();
    let status = child.wait().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if !status.success() {
        let tail: Vec<&str> = stderr_text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        let (status, code) = (status.to_string(), status.code());
        return Err(CommandError::Failed { command, status, code, stderr: tail.join("\n") });
    }
    Ok(())
}

/// Whether a program can be found on PATH.
pub fn available(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs run in an empty folder: a relative name given to one (`logdev=loop43`) names nothing; those
    /// given the user's paths (a flake `.#host`) run where nix-dabei was started.
    #[test]
    fn programs_run_in_an_empty_folder_of_their_own() {
        let caller = std::env::current_dir().expect("cwd");
        assert_eq!(working_directory("nix"), caller);
        let here = run("pwd", &[], None).expect("pwd");
        let here = here.trim();
        assert_ne!(here, std::env::current_dir().expect("cwd").to_string_lossy(), "the caller's folder");
        assert_ne!(here, "/", "a folder of nix-dabei's own");
        let listed = run("ls", &["-A".to_string()], None).expect("ls");
        assert_eq!(listed, "", "{here} holds {listed}");
        let streamed = std::sync::Mutex::new(String::new());
        stream("pwd", &[], &mut |line| streamed.lock().expect("lock").push_str(line)).expect("pwd");
        assert_eq!(streamed.into_inner().expect("lock"), here);
    }
}
