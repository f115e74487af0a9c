//! The installer's state and how keys and engine events change it. No I/O happens here: `update`
//! returns [`Command`]s that the runtime carries out, so every transition is testable.

use std::collections::BTreeSet;
use std::fmt;

use layouts::presets::{Encryption, PresetKind};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The screens, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// What this is and what it will do.
    Welcome,
    /// Choose the disks.
    Disks,
    /// Choose the layout.
    Layout,
    /// Host name and flake.
    Host,
    /// The passphrase, twice.
    Passphrase,
    /// Every step, the disks to be wiped, and the confirmation.
    Review,
    /// Progress.
    Run,
    /// How it ended.
    Result,
}

/// A disk as the disks screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRow {
    /// Stable path.
    pub path: String,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// Size in bytes.
    pub size: u64,
    /// Why it cannot be used; empty when it can.
    pub in_use: Vec<String>,
    /// What a plan records about it.
    pub facts: layouts::presets::DiskFacts,
    /// What installing beside its partitions would keep, when it has a GPT with free space.
    pub alongside: Option<AlongsideRoom>,
}

/// A disk's partitions as read back, for installing beside them.
#[derive(Debug, Clone, PartialEq)]
pub struct AlongsideRoom {
    /// The disk with every partition kept.
    pub kept: layouts::Disk,
    /// Bytes of its largest free extent.
    pub largest_free: u64,
    /// Free bytes of each ESP's FAT, by partition name.
    pub esp_free: std::collections::BTreeMap<String, u64>,
    /// One line per partition that stays, for the review.
    pub stays: Vec<String>,
}

impl DiskRow {
    /// Whether it can be chosen.
    pub fn usable(&self) -> bool {
        self.in_use.is_empty()
    }
}

/// Swap sizes offered, in GiB (0: none).
pub const SWAP_CHOICES: [u64; 6] = [0, 1, 2, 4, 8, 16];
/// Compression choices for the pool.
pub const COMPRESSION_CHOICES: [&str; 3] = ["zstd", "lz4", "off"];
/// Ashift choices (0: from the disks).
pub const ASHIFT_CHOICES: [u32; 3] = [0, 12, 13];

/// The layout answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutChoice {
    /// Which preset.
    pub kind: PresetKind,
    /// Encryption.
    pub encryption: Encryption,
    /// Index into [`SWAP_CHOICES`].
    pub swap: usize,
    /// Index into [`ASHIFT_CHOICES`].
    pub ashift: usize,
    /// Index into [`COMPRESSION_CHOICES`].
    pub compression: usize,
    /// Which field has the cursor.
    pub field: usize,
}

/// Fields of the layout screen.
pub const LAYOUT_FIELDS: usize = 5;

/// A text field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    /// Its text.
    pub text: String,
}

impl Input {
    fn key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.text.push(c);
                true
            }
            KeyCode::Backspace => {
                self.text.pop();
                true
            }
            _ => false,
        }
    }

    /// Clears the text (passphrases leave memory as soon as they are used).
    pub fn clear(&mut self) {
        // Overwrite before freeing, as with secrets elsewhere.
        let len = self.text.len();
        self.text.clear();
        self.text.extend(std::iter::repeat_n('\0', len));
        self.text.clear();
    }
}

/// A field for a passphrase: never shown by `Debug`, held in one buffer allocated once and zeroed when
/// cleared or dropped, and handed over as a [`installer::Secret`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretInput {
    text: zeroize::Zeroizing<String>,
}

impl fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl SecretInput {
    fn key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if self.text.capacity() == 0 {
                    self.text.reserve_exact(installer::secret::MAX_TYPED);
                }
                // Growing would leave a copy behind in freed memory: longer input is not taken.
                if self.text.len() + c.len_utf8() <= self.text.capacity() {
                    self.text.push(c);
                }
                true
            }
            KeyCode::Backspace => {
                self.text.pop();
                true
            }
            _ => false,
        }
    }

    /// As many `*` as characters typed.
    pub fn masked(&self) -> String {
        "*".repeat(self.text.chars().count())
    }

    /// True when nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether both fields hold the same text.
    pub fn matches(&self, other: &SecretInput) -> bool {
        *self.text == *other.text
    }

    /// Empties the field, zeroing what it held.
    pub fn clear(&mut self) {
        zeroize::Zeroize::zeroize(&mut *self.text);
    }

    /// Hands the text over as a secret and empties the field.
    pub fn take(&mut self) -> installer::Secret {
        let secret = installer::Secret::new(self.text.as_bytes().to_vec());
        self.clear();
        secret
    }
}

/// A step as the review shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewStep {
    /// What it does.
    pub description: String,
    /// done, to do, destroys.
    pub state: String,
    /// Whether it destroys data.
    pub destructive: bool,
}

/// A disk that will be wiped, as the review lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewWipe {
    /// Path.
    pub device: String,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// Size.
    pub size: u64,
}

/// What the review shows, prepared by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Every step.
    pub steps: Vec<ReviewStep>,
    /// The disks to be wiped.
    pub wipes: Vec<ReviewWipe>,
    /// Where the plan was saved.
    pub saved_to: Option<String>,
    /// The partitions that stay as they are (installing alongside).
    pub stays: Vec<String>,
}

/// Progress of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    /// Steps in the run.
    pub total: usize,
    /// Steps finished or skipped.
    pub done: usize,
    /// The step running now.
    pub current: Option<String>,
    /// Output and progress lines, newest last.
    pub log: Vec<String>,
    /// Seconds since the start.
    pub elapsed: u64,
    /// Asking whether to quit.
    pub confirm_quit: bool,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: steps applied and skipped.
    Success {
        /// Applied.
        applied: usize,
        /// Skipped.
        skipped: usize,
    },
    /// Stopped with this error.
    Failure(String),
}

/// The word typed to confirm wiping.
pub const CONFIRM_WORD: &str = "wipe";
/// The word typed to start when no disk is wiped (installing alongside).
pub const CONFIRM_WORD_KEEPING: &str = "install";

/// Everything the installer shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// The current screen.
    pub screen: Screen,
    /// The machine's disks.
    pub disks: Vec<DiskRow>,
    /// Cursor on the disks screen.
    pub disk_cursor: usize,
    /// Chosen disks (indexes).
    pub chosen: BTreeSet<usize>,
    /// Install beside the chosen disk's partitions instead of wiping it.
    pub alongside: bool,
    /// Layout answers.
    pub layout: LayoutChoice,
    /// Host name.
    pub hostname: Input,
    /// Flake reference.
    pub flake: Input,
    /// Which host field has the cursor.
    pub host_field: usize,
    /// Passphrase, twice.
    pub passphrase: [SecretInput; 2],
    /// Which passphrase field has the cursor.
    pub passphrase_field: usize,
    /// The review, once prepared.
    pub review: Option<Review>,
    /// Scroll position in the review.
    pub review_scroll: usize,
    /// The confirmation typed so far.
    pub confirm: Input,
    /// Progress.
    pub run: RunState,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// A message for the user on the current screen.
    pub notice: Option<String>,
    /// Simulate the run: nothing is written.
    pub dry_run: bool,
    /// Draw with ASCII only (the Linux console).
    pub ascii: bool,
    /// The firmware the installed system boots with (the runtime sets what this machine booted with).
    pub boot: layouts::BootMode,
    /// The kernel modules of each disk's controllers, by the disk's path.
    pub disk_modules: std::collections::BTreeMap<String, Vec<String>>,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The review is ready, or could not be prepared.
    Prepared(Result<Review, String>),
    /// The engine reported progress.
    Engine(installer::Event),
    /// The run ended.
    Finished(Outcome),
    /// A second passed.
    Tick,
}

/// What the runtime should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Build the plan from the answers, save it, and preview it against the machine.
    Prepare,
    /// Run the install (or simulate it).
    Install,
    /// Leave.
    Quit,
}

impl Model {
    /// A fresh installer over these disks.
    pub fn new(disks: Vec<DiskRow>, dry_run: bool, ascii: bool) -> Self {
        let first_usable = disks.iter().position(DiskRow::usable).unwrap_or(0);
        Model {
            screen: Screen::Welcome,
            disks,
            disk_cursor: first_usable,
            chosen: BTreeSet::new(),
            alongside: false,
            layout: LayoutChoice {
                kind: PresetKind::Single,
                encryption: Encryption::None,
                swap: 0,
                ashift: 0,
                compression: 0,
                field: 0,
            },
            hostname: Input { text: "nixos".into() },
            flake: Input::default(),
            host_field: 0,
            passphrase: [SecretInput::default(), SecretInput::default()],
            passphrase_field: 0,
            review: None,
            review_scroll: 0,
            confirm: Input::default(),
            run: RunState::default(),
            outcome: None,
            notice: None,
            dry_run,
            boot: layouts::BootMode::Uefi,
            disk_modules: std::collections::BTreeMap::new(),
            ascii,
        }
    }

    /// The word that starts the run: "wipe" when disks will be wiped, "install" when none is.
    pub fn confirm_word(&self) -> &'static str {
        match &self.review {
            Some(review) if review.wipes.is_empty() => CONFIRM_WORD_KEEPING,
            _ => CONFIRM_WORD,
        }
    }

    /// The presets the chosen disks allow.
    pub fn allowed_kinds(&self) -> Vec<PresetKind> {
        if self.chosen.len() >= 2 && !self.alongside {
            vec![PresetKind::Mirror]
        } else {
            vec![PresetKind::Single, PresetKind::Ext4]
        }
    }

    /// The encryptions the chosen layout allows.
    pub fn allowed_encryptions(&self) -> Vec<Encryption> {
        if self.layout.kind == PresetKind::Ext4 {
            vec![Encryption::None, Encryption::Luks]
        } else {
            vec![Encryption::None, Encryption::ZfsNative, Encryption::Luks]
        }
    }

    fn needs_passphrase(&self) -> bool {
        self.layout.encryption != Encryption::None
    }

    /// The screen before the current one.
    fn previous(&self) -> Screen {
        match self.screen {
            Screen::Welcome | Screen::Disks => Screen::Welcome,
            Screen::Layout => Screen::Disks,
            Screen::Host => Screen::Layout,
            Screen::Passphrase => Screen::Host,
            Screen::Review if self.needs_passphrase() => Screen::Passphrase,
            Screen::Review => Screen::Host,
            other => other,
        }
    }

    fn go(&mut self, screen: Screen) {
        self.notice = None;
        self.screen = screen;
    }
}

fn cycle<T: PartialEq + Copy>(list: &[T], current: T, forward: bool) -> T {
    let index = list.iter().position(|x| *x == current).unwrap_or(0);
    let next = if forward { (index + 1) % list.len() } else { (index + list.len() - 1) % list.len() };
    list[next]
}

/// Changes the model for a message; returns what the runtime must do.
pub fn update(model: &mut Model, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Tick => {
            if model.screen == Screen::Run && model.outcome.is_none() {
                model.run.elapsed += 1;
            }
            vec![]
        }
        Msg::Prepared(Ok(review)) => {
            model.review = Some(review);
            model.review_scroll = 0;
            model.confirm = Input::default();
            vec![]
        }
        Msg::Prepared(Err(error)) => {
            model.review = None;
            model.notice = Some(error);
            vec![]
        }
        Msg::Engine(event) => {
            engine_event(model, event);
            vec![]
        }
        Msg::Finished(outcome) => {
            if matches!(outcome, Outcome::Success { .. }) {
                model.run.current = None;
            }
            model.outcome = Some(outcome);
            model.run.confirm_quit = false;
            model.go(Screen::Result);
            vec![]
        }
        Msg::Key(key) => on_key(model, key),
    }
}

fn engine_event(model: &mut Model, event: installer::Event) {
    use installer::Event;
    let run = &mut model.run;
    match event {
        Event::Started { steps, .. } => {
            run.total = steps;
            run.done = 0;
        }
        Event::StepStarted { description, .. } => {
            run.log.push(format!("> {description}"));
            run.current = Some(description);
        }
        Event::StepOutput { line, .. } => run.log.push(format!("  {line}")),
        Event::StepSkipped { description, reason, .. } => {
            run.done += 1;
            run.log.push(format!("= {description}: already done ({reason})"));
        }
        Event::StepFinished { description, seconds, .. } => {
            run.done += 1;
            run.log.push(format!("+ {description} ({seconds:.1} s)"));
        }
        Event::StepFailed { description, error, .. } => run.log.push(format!("! {description}: {error}")),
        Event::Finished { .. } => run.current = None,
    }
    let excess = run.log.len().saturating_sub(500);
    run.log.drain(..excess);
}

fn is_quit(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

fn on_key(model: &mut Model, key: KeyEvent) -> Vec<Command> {
    if model.screen == Screen::Run {
        if model.run.confirm_quit {
            match key.code {
                KeyCode::Char('y') => return vec![Command::Quit],
                _ => model.run.confirm_quit = false,
            }
        } else if is_quit(&key) || key.code == KeyCode::Char('q') {
            model.run.confirm_quit = true;
        }
        return vec![];
    }
    let typing = matches!(model.screen, Screen::Host | Screen::Passphrase | Screen::Review);
    if is_quit(&key) || (key.code == KeyCode::Char('q') && !typing) {
        return vec![Command::Quit];
    }
    if key.code == KeyCode::Esc {
        if model.screen != Screen::Result {
            let previous = model.previous();
            model.go(previous);
        }
        return vec![];
    }
    match model.screen {
        Screen::Welcome => {
            if key.code == KeyCode::Enter {
                model.go(Screen::Disks);
            }
        }
        Screen::Disks => disks_key(model, key),
        Screen::Layout => layout_key(model, key),
        Screen::Host => match key.code {
            KeyCode::Tab | KeyCode::Down | KeyCode::Up | KeyCode::BackTab => model.host_field = 1 - model.host_field,
            KeyCode::Enter => {
                let name = model.hostname.text.trim();
                let valid = !name.is_empty()
                    && name.len() <= 63
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !name.starts_with('-');
                if !valid {
                    model.notice = Some(format!("{name:?} is not a host name: letters, digits and '-'"));
                } else if model.needs_passphrase() {
                    model.go(Screen::Passphrase);
                } else {
                    model.go(Screen::Review);
                    model.review = None;
                    return vec![Command::Prepare];
                }
            }
            _ => {
                let field = if model.host_field == 0 { &mut model.hostname } else { &mut model.flake };
                field.key(key);
            }
        },
        Screen::Passphrase => match key.code {
            KeyCode::Tab | KeyCode::Down | KeyCode::Up | KeyCode::BackTab => {
                model.passphrase_field = 1 - model.passphrase_field
            }
            KeyCode::Enter => {
                if model.passphrase[0].is_empty() {
                    model.notice = Some("the passphrase is empty".into());
                } else if !model.passphrase[0].matches(&model.passphrase[1]) {
                    model.notice = Some("the two passphrases differ".into());
                    model.passphrase[1].clear();
                    model.passphrase_field = 1;
                } else {
                    model.go(Screen::Review);
                    model.review = None;
                    return vec![Command::Prepare];
                }
            }
            _ => {
                model.passphrase[model.passphrase_field].key(key);
            }
        },
        Screen::Review => match key.code {
            KeyCode::Down | KeyCode::PageDown => model.review_scroll += if key.code == KeyCode::Down { 1 } else { 10 },
            KeyCode::Up | KeyCode::PageUp => {
                model.review_scroll = model.review_scroll.saturating_sub(if key.code == KeyCode::Up { 1 } else { 10 })
            }
            KeyCode::Enter => {
                if model.review.is_none() {
                    return vec![];
                }
                if model.confirm.text.trim() == model.confirm_word() {
                    model.confirm = Input::default();
                    model.run = RunState::default();
                    model.outcome = None;
                    model.go(Screen::Run);
                    return vec![Command::Install];
                }
                model.notice = Some(format!("type {:?} and press Enter to start", model.confirm_word()));
            }
            _ => {
                model.confirm.key(key);
            }
        },
        Screen::Result => match key.code {
            KeyCode::Char('r') if matches!(model.outcome, Some(Outcome::Failure(_))) => {
                model.run = RunState::default();
                model.outcome = None;
                model.go(Screen::Run);
                return vec![Command::Install];
            }
            KeyCode::Enter => return vec![Command::Quit],
            _ => {}
        },
        Screen::Run => {}
    }
    vec![]
}

fn disks_key(model: &mut Model, key: KeyEvent) {
    let count = model.disks.len();
    match key.code {
        KeyCode::Down | KeyCode::Char('j') if count > 0 => model.disk_cursor = (model.disk_cursor + 1) % count,
        KeyCode::Up | KeyCode::Char('k') if count > 0 => model.disk_cursor = (model.disk_cursor + count - 1) % count,
        KeyCode::Char(' ') => {
            let Some(disk) = model.disks.get(model.disk_cursor) else { return };
            if !disk.usable() {
                model.notice = Some(format!("{} cannot be used: {}", disk.path, disk.in_use.join("; ")));
            } else if !model.chosen.remove(&model.disk_cursor) {
                if model.alongside {
                    // Installing alongside is on one disk: choosing another one wipes disks instead.
                    model.chosen.clear();
                    model.alongside = false;
                }
                model.chosen.insert(model.disk_cursor);
                model.notice = None;
            } else {
                model.alongside = false;
            }
        }
        KeyCode::Char('a') => {
            let Some(disk) = model.disks.get(model.disk_cursor) else { return };
            match &disk.alongside {
                _ if !disk.usable() => {
                    model.notice = Some(format!("{} cannot be used: {}", disk.path, disk.in_use.join("; ")));
                }
                Some(room) if !(model.alongside && model.chosen.contains(&model.disk_cursor)) => {
                    model.notice = Some(format!(
                        "installing alongside on {}: its {} partition(s) stay; the new system goes into {} of \
                         free space",
                        disk.path,
                        room.kept.partitions.len(),
                        layouts::size::human(room.largest_free)
                    ));
                    model.chosen = BTreeSet::from([model.disk_cursor]);
                    model.alongside = true;
                }
                Some(_) => {
                    model.alongside = false;
                    model.chosen.clear();
                    model.notice = None;
                }
                None => {
                    model.notice = Some(format!("{} has no GPT with free space to install beside", disk.path));
                }
            }
        }
        KeyCode::Enter => {
            if model.chosen.is_empty() {
                model.notice = Some("choose at least one disk with Space".into());
                return;
            }
            let allowed = model.allowed_kinds();
            if !allowed.contains(&model.layout.kind) {
                model.layout.kind = allowed[0];
            }
            if !model.allowed_encryptions().contains(&model.layout.encryption) {
                model.layout.encryption = Encryption::None;
            }
            model.go(Screen::Layout);
        }
        _ => {}
    }
}

fn layout_key(model: &mut Model, key: KeyEvent) {
    let forward = match key.code {
        KeyCode::Down | KeyCode::Tab => {
            model.layout.field = (model.layout.field + 1) % LAYOUT_FIELDS;
            return;
        }
        KeyCode::Up | KeyCode::BackTab => {
            model.layout.field = (model.layout.field + LAYOUT_FIELDS - 1) % LAYOUT_FIELDS;
            return;
        }
        KeyCode::Enter => {
            model.go(Screen::Host);
            return;
        }
        KeyCode::Right | KeyCode::Char(' ') | KeyCode::Char('l') => true,
        KeyCode::Left | KeyCode::Char('h') => false,
        _ => return,
    };
    let layout = &mut model.layout;
    match layout.field {
        0 => {
            let kinds = model.allowed_kinds();
            model.layout.kind = cycle(&kinds, model.layout.kind, forward);
            if !model.allowed_encryptions().contains(&model.layout.encryption) {
                model.layout.encryption = Encryption::None;
            }
        }
        1 => {
            let options = model.allowed_encryptions();
            model.layout.encryption = cycle(&options, model.layout.encryption, forward);
        }
        2 => layout.swap = cycle(&[0, 1, 2, 3, 4, 5], layout.swap, forward),
        3 => layout.ashift = cycle(&[0, 1, 2], layout.ashift, forward),
        _ => layout.compression = cycle(&[0, 1, 2], layout.compression, forward),
    }
}
