//! A program on a terminal, driven like a person would: tmux runs it, keys go in with send-keys, the
//! screen comes back with capture-pane.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::loopdev::run;

/// A detached tmux session running one command; killed on drop.
#[derive(Debug)]
pub struct Session {
    name: String,
}

impl Session {
    /// Starts `command` in a fresh session `name` of `width` x `height` (an old one of that name is
    /// killed first).
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Session {
        let _ = Command::new("tmux").args(["kill-session", "-t", name]).output();
        let (width, height) = (width.to_string(), height.to_string());
        run("tmux", &["new-session", "-d", "-s", name, "-x", &width, "-y", &height, command])
            .unwrap_or_else(|e| panic!("tmux: {e}"));
        Session { name: name.to_string() }
    }

    fn tmux(&self, args: &[&str]) -> String {
        run("tmux", args).unwrap_or_else(|e| panic!("tmux {args:?}: {e}"))
    }

    /// Presses keys, by tmux's names (Enter, Down, Space, BSpace, ...).
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", "-t", &self.name, key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Types text.
    pub fn text(&self, literal: &str) {
        self.tmux(&["send-keys", "-t", &self.name, "-l", literal]);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// What the screen shows now, with the last 50 lines of history, wrapped lines joined.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-50", "-t", &self.name])
    }

    /// Waits up to 30 s until the screen shows `wanted`; returns the screen.
    pub fn wait_for(&self, wanted: &str) -> String {
        let start = Instant::now();
        loop {
            let shown = self.screen();
            if shown.contains(wanted) {
                return shown;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "waited for {wanted:?}; the screen shows:\n{shown}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).output();
    }
}
