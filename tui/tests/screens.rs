//! The installer's screens: transitions through `update`, and every screen drawn at 80x24 and 120x40.

use installer::Event;
use layouts::presets::{DiskFacts, Encryption, PresetKind};
use layouts::{CompileOptions, Identity};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;
use tui::app::{update, Command, DiskRow, Model, Msg, Outcome, Review, ReviewStep, ReviewWipe, Screen};

fn row(path: &str, serial: &str, size: u64, in_use: &[&str]) -> DiskRow {
    DiskRow {
        path: path.into(),
        model: "QEMU HARDDISK".into(),
        serial: serial.into(),
        size,
        in_use: in_use.iter().map(|s| s.to_string()).collect(),
        facts: DiskFacts {
            device: path.into(),
            size: Some(size),
            logical_sector_size: 512,
            physical_sector_size: Some(4096),
            identity: Identity { serial: Some(serial.into()), wwn: None, model: Some("QEMU HARDDISK".into()) },
        },
        alongside: None,
    }
}

/// A disk as Windows leaves it, read back: an ESP with room, the system partition, free space after it.
fn windows_row() -> DiskRow {
    let plan = layouts::Plan::from_toml(
        r#"hostname = "read-back"
[disks.main]
device = "/dev/disk/by-id/nvme-windows"
size = 137438953472
[disks.main.partitions.p1]
number = 1
start = "1M"
size = "300M"
type = "esp"
uuid = "2f2c1b56-7d34-4c1e-9f0a-0b6a6c1d1e01"
keep = true
content.filesystem = { format = "vfat", uuid = "1A2B-3C4D", label = "SYSTEM" }
[disks.main.partitions.p2]
number = 2
start = "301M"
size = "60G"
type = "microsoft-basic-data"
uuid = "2f2c1b56-7d34-4c1e-9f0a-0b6a6c1d1e02"
keep = true
"#,
    )
    .expect("plan");
    let mut row = row("/dev/disk/by-id/nvme-windows", "W1", 128 << 30, &[]);
    row.alongside = Some(tui::app::AlongsideRoom {
        kept: plan.disks["main"].clone(),
        largest_free: (128 << 30) - (61 << 30) - (301 << 20),
        esp_free: [("p1".to_string(), 250u64 << 20)].into(),
        stays: vec!["p1  esp  300 MiB  vfat  SYSTEM".into(), "p2  microsoft-basic-data  60 GiB  -  ".into()],
    });
    row
}

/// The disks screen with a disk to install beside.
fn alongside_model() -> Model {
    let mut m = Model::new(vec![row("/dev/disk/by-id/virtio-d0", "d0", 32 << 30, &[]), windows_row()], false, false);
    update(&mut m, key(KeyCode::Enter));
    m
}

fn model() -> Model {
    Model::new(
        vec![
            row(
                "/dev/disk/by-id/virtio-system",
                "system",
                256 << 30,
                &["/dev/vda1 is mounted at /", "/dev/vda2 is active swap", "/dev/vda3 is a member of pool tank"],
            ),
            row("/dev/disk/by-id/virtio-d0", "d0", 32 << 30, &[]),
            row("/dev/disk/by-id/virtio-d1", "d1", 32 << 30, &[]),
        ],
        false,
        false,
    )
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(model: &mut Model, text: &str) {
    for c in text.chars() {
        update(model, key(KeyCode::Char(c)));
    }
}

/// A model walked to the review of an encrypted mirror, with the review the runtime would prepare.
fn at_review() -> Model {
    let mut m = model();
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Right));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Tab));
    typed(&mut m, "github:me/machines#web1");
    update(&mut m, key(KeyCode::Enter));
    typed(&mut m, "secret");
    update(&mut m, key(KeyCode::Tab));
    typed(&mut m, "secret");
    assert_eq!(update(&mut m, key(KeyCode::Enter)), vec![Command::Prepare]);
    let plan = tui::runtime::plan_from_answers(&m).expect("plan");
    let steps = plan.compile(&CompileOptions::default()).expect("steps");
    let review = Review {
        steps: steps
            .steps
            .iter()
            .map(|s| ReviewStep {
                description: s.description.clone(),
                state: if s.destructive { "DESTROYS".into() } else { "to do".into() },
                destructive: s.destructive,
            })
            .collect(),
        wipes: vec![
            ReviewWipe {
                device: "/dev/disk/by-id/virtio-d0".into(),
                model: "QEMU HARDDISK".into(),
                serial: "d0".into(),
                size: 32 << 30,
            },
            ReviewWipe {
                device: "/dev/disk/by-id/virtio-d1".into(),
                model: "QEMU HARDDISK".into(),
                serial: "d1".into(),
                size: 32 << 30,
            },
        ],
        saved_to: Some("/run/nix-dabei/plan.toml".into()),
        stays: Vec::new(),
    };
    update(&mut m, Msg::Prepared(Ok(review)));
    m
}

#[test]
fn installing_alongside_takes_one_disk_keeps_its_partitions_and_reuses_its_esp() {
    let mut m = alongside_model();
    assert_eq!(m.disk_cursor, 0);
    update(&mut m, key(KeyCode::Char('a')));
    assert!(!m.alongside, "the blank disk has nothing to install beside");
    assert!(m.notice.as_deref().is_some_and(|n| n.contains("no GPT with free space")), "{:?}", m.notice);
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Char('a')));
    assert!(m.alongside && m.chosen == [1].into(), "alongside on the Windows disk alone: {:?}", m.chosen);
    assert!(m.notice.as_deref().is_some_and(|n| n.contains("2 partition(s) stay")), "{:?}", m.notice);
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Layout);
    assert_eq!(m.allowed_kinds(), [PresetKind::Single, PresetKind::Ext4]);
    let plan = tui::runtime::plan_from_answers(&m).expect("a plan beside Windows");
    let names: Vec<&str> = plan.disks["main"].partitions.keys().map(String::as_str).collect();
    assert_eq!(names, ["p1", "p2", "zfs"], "the pool goes after Windows; the ESP with room is reused");
    assert!(plan.disks["main"].partitions["p1"].keep && plan.disks["main"].partitions["p2"].keep);
    // Choosing a disk with Space leaves alongside: that disk would be wiped.
    update(&mut m, key(KeyCode::Esc));
    update(&mut m, key(KeyCode::Up));
    update(&mut m, key(KeyCode::Char(' ')));
    assert!(!m.alongside && m.chosen == [0].into(), "{:?}", m.chosen);
}

/// The review of an install beside Windows: nothing wiped, what stays listed.
fn alongside_review() -> Model {
    let mut m = alongside_model();
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Char('a')));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    let plan = tui::runtime::plan_from_answers(&m).expect("plan");
    let steps = plan.compile(&CompileOptions::default()).expect("steps");
    m.screen = Screen::Review;
    let review = Review {
        steps: steps
            .steps
            .iter()
            .map(|s| {
                let kept = s.keeps.is_some();
                ReviewStep {
                    description: s.description.clone(),
                    state: if kept { "done".into() } else { "to do".into() },
                    destructive: false,
                }
            })
            .collect(),
        wipes: Vec::new(),
        saved_to: Some("/run/nix-dabei/plan.toml".into()),
        stays: windows_row().alongside.map(|room| room.stays).unwrap_or_default(),
    };
    update(&mut m, Msg::Prepared(Ok(review)));
    m
}

#[test]
fn welcome_leads_to_disks_and_esc_goes_back() {
    let mut m = model();
    assert_eq!(m.screen, Screen::Welcome);
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Disks);
    assert_eq!(m.disk_cursor, 1, "the cursor starts on the first usable disk");
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.screen, Screen::Welcome);
    assert_eq!(update(&mut m, key(KeyCode::Char('q'))), vec![Command::Quit]);
}

#[test]
fn disks_in_use_cannot_be_chosen() {
    let mut m = model();
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Up));
    assert_eq!(m.disk_cursor, 0);
    update(&mut m, key(KeyCode::Char(' ')));
    assert!(m.chosen.is_empty());
    assert!(m.notice.as_deref().is_some_and(|n| n.contains("cannot be used: /dev/vda1 is mounted at /")));
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Disks, "no disk chosen yet");
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Layout);
    assert_eq!(m.layout.kind, PresetKind::Single);
}

#[test]
fn two_disks_make_a_mirror_and_ext4_offers_no_native_encryption() {
    let mut m = model();
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Down));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.layout.kind, PresetKind::Mirror);
    update(&mut m, key(KeyCode::Right));
    assert_eq!(m.layout.kind, PresetKind::Mirror, "two disks allow only the mirror");

    let mut single = model();
    update(&mut single, key(KeyCode::Enter));
    update(&mut single, key(KeyCode::Char(' ')));
    update(&mut single, key(KeyCode::Enter));
    update(&mut single, key(KeyCode::Right));
    assert_eq!(single.layout.kind, PresetKind::Ext4);
    update(&mut single, key(KeyCode::Down));
    update(&mut single, key(KeyCode::Right));
    assert_eq!(single.layout.encryption, Encryption::Luks);
    update(&mut single, key(KeyCode::Right));
    assert_eq!(single.layout.encryption, Encryption::None);
}

#[test]
fn host_names_are_checked_and_unencrypted_layouts_skip_the_passphrase() {
    let mut m = model();
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Char(' ')));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Host);
    typed(&mut m, "_bad");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.notice.as_deref().is_some_and(|n| n.contains("is not a host name")));
    for _ in 0..4 {
        update(&mut m, key(KeyCode::Backspace));
    }
    assert_eq!(update(&mut m, key(KeyCode::Enter)), vec![Command::Prepare]);
    assert_eq!(m.screen, Screen::Review);
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.screen, Screen::Host, "back skips the passphrase when nothing is encrypted");
}

#[test]
fn passphrases_must_match() {
    let mut m = at_review();
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.screen, Screen::Passphrase);
    m.passphrase[1].clear();
    typed(&mut m, "other");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert_eq!(m.notice.as_deref(), Some("the two passphrases differ"));
    assert!(m.passphrase[1].is_empty());
    assert_eq!(format!("{:?}", m.passphrase[0]), "[secret]", "the model's Debug shows the passphrase");
}

#[test]
fn the_run_starts_only_after_the_word_is_typed() {
    let mut m = at_review();
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert_eq!(m.screen, Screen::Review);
    typed(&mut m, "wip");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    typed(&mut m, "e");
    assert_eq!(update(&mut m, key(KeyCode::Enter)), vec![Command::Install]);
    assert_eq!(m.screen, Screen::Run);
}

#[test]
fn beside_another_system_the_word_is_install_not_wipe() {
    let mut m = alongside_review();
    assert_eq!(m.confirm_word(), "install");
    typed(&mut m, "wipe");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty(), "nothing is wiped: wipe is not the word");
    assert!(m.notice.as_deref().is_some_and(|n| n.contains("\"install\"")), "{:?}", m.notice);
    for _ in 0..4 {
        update(&mut m, key(KeyCode::Backspace));
    }
    typed(&mut m, "install");
    assert_eq!(update(&mut m, key(KeyCode::Enter)), vec![Command::Install]);
}

#[test]
fn quitting_during_a_run_asks_first_and_a_failure_can_be_resumed() {
    let mut m = at_review();
    typed(&mut m, "wipe");
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, Msg::Engine(Event::Started { host: "nixos".into(), steps: 3 }));
    update(&mut m, Msg::Engine(Event::StepStarted { id: "a".into(), description: "Wipe disk disk0".into() }));
    update(
        &mut m,
        Msg::Engine(Event::StepFinished { id: "a".into(), description: "Wipe disk disk0".into(), seconds: 0.5 }),
    );
    assert_eq!((m.run.done, m.run.total), (1, 3));
    assert!(update(&mut m, key(KeyCode::Char('q'))).is_empty());
    assert!(m.run.confirm_quit);
    update(&mut m, key(KeyCode::Char('n')));
    assert!(!m.run.confirm_quit);
    update(&mut m, Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert_eq!(update(&mut m, key(KeyCode::Char('y'))), vec![Command::Quit]);

    update(&mut m, Msg::Finished(Outcome::Failure("step zpool-create:rpool failed".into())));
    assert_eq!(m.screen, Screen::Result);
    assert_eq!(update(&mut m, key(KeyCode::Char('r'))), vec![Command::Install]);
    assert_eq!(m.screen, Screen::Run);
}

fn draw(m: &Model, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|frame| tui::view::view(m, frame)).expect("draw");
    terminal
}

fn screens() -> Vec<(&'static str, Model)> {
    let mut list = Vec::new();
    let mut m = model();
    list.push(("welcome", m.clone()));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Char(' ')));
    list.push(("disks", m.clone()));
    // On the disk in use: its reasons in full, which the table cuts.
    let mut in_use = m.clone();
    update(&mut in_use, key(KeyCode::Up));
    list.push(("disks-in-use", in_use));
    let mut beside = alongside_model();
    update(&mut beside, key(KeyCode::Down));
    update(&mut beside, key(KeyCode::Char('a')));
    list.push(("disks-alongside", beside));
    list.push(("review-alongside", alongside_review()));
    let review = at_review();
    let mut layout = review.clone();
    layout.screen = Screen::Layout;
    layout.notice = None;
    list.push(("layout", layout));
    let mut host = review.clone();
    host.screen = Screen::Host;
    host.host_field = 1;
    list.push(("host", host));
    let mut pass = review.clone();
    pass.screen = Screen::Passphrase;
    list.push(("passphrase", pass));
    list.push(("review", review.clone()));
    let mut run = review.clone();
    typed(&mut run, "wipe");
    update(&mut run, key(KeyCode::Enter));
    update(&mut run, Msg::Engine(Event::Started { host: "nixos".into(), steps: 24 }));
    for (id, text) in [("wipe:disk0", "Wipe disk disk0"), ("gpt:disk0", "Write a GPT to disk disk0")] {
        update(&mut run, Msg::Engine(Event::StepStarted { id: id.into(), description: text.into() }));
        update(&mut run, Msg::Engine(Event::StepFinished { id: id.into(), description: text.into(), seconds: 1.2 }));
    }
    update(
        &mut run,
        Msg::Engine(Event::StepStarted { id: "nixos-install".into(), description: "Install NixOS".into() }),
    );
    update(
        &mut run,
        Msg::Engine(Event::StepOutput {
            id: "nixos-install".into(),
            line: "building the system configuration...".into(),
        }),
    );
    for _ in 0..75 {
        update(&mut run, Msg::Tick);
    }
    list.push(("run", run.clone()));
    let mut done = run.clone();
    update(&mut done, Msg::Finished(Outcome::Success { applied: 22, skipped: 2 }));
    list.push(("result-success", done.clone()));
    let mut dry = done;
    dry.dry_run = true;
    list.push(("result-dry-run", dry));
    let mut failed = run;
    update(
        &mut failed,
        Msg::Finished(Outcome::Failure(
            "step nixos-install (Install NixOS) failed: \
        `nixos-install` failed (exit status: 1): error: flake not found"
                .into(),
        )),
    );
    list.push(("result-failure", failed));
    list
}

#[test]
fn every_screen_at_80x24_and_120x40() {
    for (name, m) in screens() {
        for (width, height) in [(80, 24), (120, 40)] {
            insta::assert_snapshot!(format!("{name}-{width}x{height}"), draw(&m, width, height).backend());
        }
    }
}

#[test]
fn the_linux_console_gets_ascii_borders() {
    let mut m = model();
    m.ascii = true;
    let terminal = draw(&m, 80, 24);
    let text = terminal.backend().to_string();
    assert!(text.contains("+ Welcome -"), "{text}");
    assert!(!text.contains('┌') && !text.contains('│'));
}

#[test]
fn destructive_steps_and_unusable_disks_are_styled() {
    let review = at_review();
    let terminal = draw(&review, 120, 40);
    let buffer = terminal.backend().buffer();
    let destroys_row = (0..40).find(|&y| {
        let line: String = (0..120).map(|x| buffer[(x, y)].symbol().to_string()).collect();
        line.contains("DESTROYS Wipe disk disk0")
    });
    let y = destroys_row.expect("a destructive step is listed");
    let x = (0..120).find(|&x| buffer[(x, y)].symbol() == "D").expect("marker");
    assert_eq!(buffer[(x, y)].fg, Color::Red);

    let mut m = model();
    update(&mut m, key(KeyCode::Enter));
    let terminal = draw(&m, 120, 40);
    let buffer = terminal.backend().buffer();
    let y = (0..40)
        .find(|&y| (0..120).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>().contains("virtio-system"))
        .expect("listed");
    let x = (0..120).find(|&x| buffer[(x, y)].symbol() == "/").expect("path");
    assert_eq!(buffer[(x, y)].fg, Color::DarkGray, "the disk in use is greyed");
}
