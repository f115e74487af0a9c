//! The one module that runs external programs. Every failure names the command line, its exit status
//! and its stderr. Secrets go to a program's standard input, never to its arguments or environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

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
        /// What it printed on stderr, trimmed (its end, where it printed much).
        stderr: String,
    },
    /// The program printed more than nix-dabei reads, and was stopped.
    #[error(
        "`{command}` printed more than {} MiB, which is more than any answer nix-dabei reads; it was stopped",
        limit >> 20
    )]
    TooMuchOutput {
        /// The command line.
        command: String,
        /// The bytes read before it was stopped.
        limit: u64,
    },
}

/// The most of a program's standard output that is read whole: far more than any listing nix-dabei reads
/// (a 60-disk pool's status is well under 1 MiB), far less than a program (or the far side of `remote`)
/// printing without end would need to exhaust memory.
const OUTPUT_LIMIT: u64 = 64 << 20;

/// The longest line [`stream`] hands on; a longer one is cut there.
const LINE_LIMIT: usize = 1 << 20;

/// What is kept of a program's stderr for its error message: the end.
const STDERR_KEPT: usize = 64 << 10;

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
    drop(child.stdin.take());
    stdout_of(command, child)
}

/// A started program's standard output once it ended (at most [`OUTPUT_LIMIT`] bytes: beyond, it is
/// killed), or its failure with the end of its stderr.
fn stdout_of(command: String, mut child: Child) -> Result<String, CommandError> {
    let stderr = child.stderr.take();
    let stderr_thread = std::thread::spawn(move || stderr.map(|pipe| read_end(pipe, STDERR_KEPT)).unwrap_or_default());
    let mut stdout = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        let _ = pipe.take(OUTPUT_LIMIT + 1).read_to_end(&mut stdout);
    }
    let too_much = stdout.len() as u64 > OUTPUT_LIMIT;
    if too_much {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    let stderr = stderr_thread.join().unwrap_or_default();
    if too_much {
        return Err(CommandError::TooMuchOutput { command, limit: OUTPUT_LIMIT });
    }
    if !status.success() {
        return Err(CommandError::Failed {
            command,
            status: status.to_string(),
            code: status.code(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Everything `reader` gives, of which only the last `keep` bytes are kept.
fn read_end(mut reader: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(read) = reader.read(&mut chunk) {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > 2 * keep {
            kept.drain(..kept.len() - keep);
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    kept
}

/// Hands each line of `reader` to `on_line`, without its end of line; a line longer than [`LINE_LIMIT`]
/// is cut there (and says so), so that no line, however long, is held whole.
fn for_each_line(reader: impl Read, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buffer) => buffer,
        };
        let (piece, ends) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], Some(at + 1)),
            None => (buffer, None),
        };
        let room = LINE_LIMIT.saturating_sub(line.len());
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        cut |= piece.len() > room;
        let used = ends.unwrap_or(buffer.len());
        reader.consume(used);
        if ends.is_some() {
            let mut text = String::from_utf8_lossy(&line).into_owned();
            if cut {
                text.push_str(" [line cut at 1 MiB]");
            }
            on_line(text);
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() {
        on_line(String::from_utf8_lossy(&line).into_owned());
    }
}

/// Runs a program with the contents of `file` on its standard input (streamed, not read into memory);
/// returns its standard output.
pub fn run_with_file_input(program: &str, args: &[String], file: &std::path::Path) -> Result<String, CommandError> {
    let command = command_line(program, args);
    let input = std::fs::File::open(file).map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    let child = Command::new(program)
        .current_dir(working_directory(program))
        .args(args)
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    stdout_of(command, child)
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
    // The last lines of stderr, for the error message.
    let stderr_thread = std::thread::spawn(move || {
        let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        if let Some(pipe) = stderr {
            for_each_line(pipe, |line| {
                if last.len() == 20 {
                    last.pop_front();
                }
                last.push_back(line.clone());
                let _ = err_sender.send(line);
            });
        }
        Vec::from(last)
    });
    if let Some(stdout) = child.stdout.take() {
        let out_sender = sender;
        std::thread::spawn(move || {
            for_each_line(stdout, |line| {
                let _ = out_sender.send(line);
            });
        });
    }
    for line in receiver {
        on_line(&line);
    }
    let tail = stderr_thread.join().unwrap_or_default();
    let status = child.wait().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if !status.success() {
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

    /// A program that prints without end (or the far side of `remote` through ssh) is stopped at the
    /// limit rather than read into memory; a stream's lines and a failure's stderr are bounded too.
    #[test]
    fn what_a_program_prints_is_read_up_to_a_limit() {
        let sh = |script: &str| vec!["-c".to_string(), script.to_string()];
        let endless = run("sh", &sh("yes 0123456789abcdef | head -c 80000000"), None);
        assert!(matches!(endless, Err(CommandError::TooMuchOutput { limit: OUTPUT_LIMIT, .. })), "{endless:?}");
        let failed = run("sh", &sh("yes 'an error line' | head -c 5000000 >&2; echo last >&2; exit 3"), None);
        match failed {
            Err(CommandError::Failed { stderr, code: Some(3), .. }) => {
                assert!(stderr.len() <= STDERR_KEPT && stderr.ends_with("last"), "{} bytes", stderr.len());
            }
            other => panic!("{other:?}"),
        }
        let mut lines = Vec::new();
        stream("sh", &sh("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo after"), &mut |line| {
            lines.push(line.len())
        })
        .expect("stream");
        assert_eq!(lines, [LINE_LIMIT + " [line cut at 1 MiB]".len(), "after".len()]);
        let failed = stream("sh", &sh("seq 1 100000 >&2; exit 1"), &mut |_| {});
        match failed {
            Err(CommandError::Failed { stderr, .. }) => assert_eq!(stderr.lines().count(), 20, "{stderr}"),
            other => panic!("{other:?}"),
        }
    }
}
