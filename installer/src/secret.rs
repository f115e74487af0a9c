//! Passphrases: read from a file, standard input or a prompt, kept out of argv, logs and plans, and
//! zeroed when dropped. Reading goes straight from the file descriptor into one buffer of fixed size,
//! so that no buffered reader or grown vector leaves a copy behind in freed memory.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use zeroize::Zeroize;

/// The longest passphrase read from standard input or a terminal.
pub const MAX_TYPED: usize = 4096;

/// The longest key file read.
pub const MAX_KEY_FILE: u64 = 8 << 20;

/// A passphrase or key. Its `Debug` form is `[secret]`; its bytes are zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from bytes; one trailing newline (as `echo` or an editor leaves) is dropped.
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

    /// Reads a key file whole.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let length = file.metadata()?.len();
        if length > MAX_KEY_FILE {
            return Err(std::io::Error::other(format!("{} is larger than a key file can be", path.display())));
        }
        let mut bytes = vec![0u8; length as usize];
        if let Err(error) = file.read_exact(&mut bytes) {
            bytes.zeroize();
            return Err(error);
        }
        Ok(Secret::new(bytes))
    }

    /// Reads one line from standard input, unbuffered.
    pub fn from_stdin() -> std::io::Result<Self> {
        read_line(std::io::stdin().as_fd())
    }

    /// Asks on the terminal without echo; with `confirm`, asks twice until both agree.
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

    /// True for an empty passphrase.
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
        self.0.zeroize();
    }
}

/// Reads up to a newline, a byte at a time, into one buffer allocated once.
fn read_line(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Secret> {
    let mut bytes = Vec::with_capacity(MAX_TYPED);
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if bytes.len() == MAX_TYPED => {
                bytes.zeroize();
                byte.zeroize();
                return Err(std::io::Error::other(format!("the passphrase is longer than {MAX_TYPED} bytes")));
            }
            Ok(_) => bytes.push(byte[0]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => {
                bytes.zeroize();
                return Err(errno.into());
            }
        }
    }
    byte.zeroize();
    Ok(Secret::new(bytes))
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
    let read = read_line(tty.as_fd());
    tcsetattr(&tty, SetArg::TCSANOW, &original).map_err(std::io::Error::from)?;
    read
}

/// Keeps secrets out of core dumps for the rest of the process's life: no core file is written
/// (RLIMIT_CORE 0), and the process is not dumpable (PR_SET_DUMPABLE 0, which also keeps other processes
/// of the same user from reading its memory). Called before the first secret is read.
pub fn protect_process() -> std::io::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    nix::sys::prctl::set_dumpable(false)?;
    Ok(())
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

    #[test]
    fn a_line_is_read_unbuffered_and_no_further() {
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        nix::unistd::write(&writer, b"first line\nsecond line\n").expect("write");
        let secret = read_line(reader.as_fd()).expect("read");
        assert_eq!(secret.expose(), b"first line");
        // What follows the line stays in the pipe: nothing was read ahead into a buffer.
        let mut rest = [0u8; 12];
        assert_eq!(nix::unistd::read(reader.as_fd(), &mut rest).expect("rest"), 12);
        assert_eq!(&rest, b"second line\n");
    }

    #[test]
    fn no_core_dump_once_protected() {
        protect_process().expect("protect");
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).expect("limit");
        assert_eq!((soft, hard), (0, 0));
        assert!(!nix::sys::prctl::get_dumpable().expect("dumpable"));
    }
}
