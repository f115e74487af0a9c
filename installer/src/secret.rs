//! Passphrases: read from a file, standard input or a prompt, kept out of argv, logs and plans, and
//! zeroed when dropped.

use std::fmt;
use std::io::{BufRead, Write};

/// A passphrase. It prints as `[secret]` and is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes, dropping one trailing newline (as files and pipes usually have).
    pub fn new(mut bytes: Vec<u8>) -> Self {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Secret(bytes)
    }

    /// The bytes, for handing to a library or a program's standard input.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads a passphrase from a file.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Secret::new(std::fs::read(path)?))
    }

    /// Reads one line from standard input.
    pub fn from_stdin() -> std::io::Result<Self> {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(Secret::new(line.into_bytes()))
    }

    /// Asks on the terminal, without echo, twice when `confirm` is set.
    pub fn prompt(question: &str, confirm: bool) -> std::io::Result<Self> {
        loop {
            let first = read_hidden(question)?;
            if !confirm {
                return Ok(first);
            }
            let second = read_hidden("Repeat it: ")?;
            if first == second {
                return Ok(first);
            }
            eprintln!("The two passphrases differ; try again.");
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for byte in self.0.iter_mut() {
            // Volatile so that the compiler keeps the zeroing of memory about to be freed.
            // SAFETY: the pointer comes from a live &mut u8.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

fn read_hidden(question: &str) -> std::io::Result<Secret> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let mut writer = &tty;
    writer.write_all(question.as_bytes())?;
    writer.flush()?;
    let original = tcgetattr(&tty).map_err(std::io::Error::from)?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSANOW, &silent).map_err(std::io::Error::from)?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    tcsetattr(&tty, SetArg::TCSANOW, &original).map_err(std::io::Error::from)?;
    read?;
    Ok(Secret::new(line.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let secret = Secret::new(b"hunter2\n".to_vec());
        assert_eq!(format!("{secret:?}"), "[secret]");
        assert_eq!(secret.expose(), b"hunter2");
    }
}
