//! Drawing: a plain function of the model, one per screen, with the keys of each screen in a footer.

use layouts::presets::{Encryption, PresetKind};
use layouts::size::human;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, List, ListItem, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::app::{Model, Outcome, Screen, ASHIFT_CHOICES, COMPRESSION_CHOICES, SWAP_CHOICES};

/// Borders the Linux console can draw without a Unicode font.
const ASCII_BORDER: border::Set<'static> = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

fn block<'a>(model: &Model, title: &'a str) -> Block<'a> {
    let block = Block::default().borders(Borders::ALL).title(format!(" {title} "));
    if model.ascii {
        block.border_set(ASCII_BORDER)
    } else {
        block
    }
}

fn keys(screen: Screen, model: &Model) -> &'static str {
    match screen {
        Screen::Welcome => "Enter start   q quit",
        Screen::Disks => "Up/Down move   Space choose   a alongside   Enter next   Esc back   q quit",
        Screen::Layout => "Up/Down field   Left/Right change   Enter next   Esc back   q quit",
        Screen::Host | Screen::Passphrase => "Tab other field   Enter next   Esc back   Ctrl-C quit",
        Screen::Review if model.confirm_word() == "install" => {
            "Up/Down scroll   type install, then Enter: start   Esc back   Ctrl-C quit"
        }
        Screen::Review => "Up/Down scroll   type wipe, then Enter: start   Esc back   Ctrl-C quit",
        Screen::Run if model.run.confirm_quit => "y quit now (the install stops half-way)   any other key: keep going",
        Screen::Run => "q quit (asks first)",
        Screen::Result if matches!(model.outcome, Some(Outcome::Failure(_))) => {
            "r resume (runs again, skipping what is done)   Enter quit"
        }
        Screen::Result => "Enter quit",
    }
}

fn step_title(screen: Screen) -> &'static str {
    match screen {
        Screen::Welcome => "1/8 Welcome",
        Screen::Disks => "2/8 Disks",
        Screen::Layout => "3/8 Layout",
        Screen::Host => "4/8 Host",
        Screen::Passphrase => "5/8 Passphrase",
        Screen::Review => "6/8 Review",
        Screen::Run => "7/8 Installing",
        Screen::Result => "8/8 Result",
    }
}

/// Draws the whole screen.
pub fn view(model: &Model, frame: &mut Frame) {
    let [title, body, notice, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(5), Constraint::Length(1), Constraint::Length(1)])
            .areas(frame.area());
    let mode = if model.dry_run { "  [dry run: nothing is written]" } else { "" };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("nix-dabei", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("  {}{mode}", step_title(model.screen))),
        ])),
        title,
    );
    match model.screen {
        Screen::Welcome => welcome(model, frame, body),
        Screen::Disks => disks(model, frame, body),
        Screen::Layout => layout(model, frame, body),
        Screen::Host => host(model, frame, body),
        Screen::Passphrase => passphrase(model, frame, body),
        Screen::Review => review(model, frame, body),
        Screen::Run => run(model, frame, body),
        Screen::Result => result(model, frame, body),
    }
    if let Some(text) = &model.notice {
        frame.render_widget(Paragraph::new(text.as_str()).style(Style::new().fg(Color::Yellow)), notice);
    }
    frame.render_widget(
        Paragraph::new(keys(model.screen, model)).style(Style::new().add_modifier(Modifier::REVERSED)),
        footer,
    );
}

fn welcome(model: &Model, frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("Install NixOS onto this machine's disks."),
        Line::from(""),
        // One line per paragraph: the block wraps them to its width.
        Line::from(
            "You choose the disks and a layout (ZFS single disk or mirror, or ext4; optionally encrypted), then \
             review every step before anything is written. Only the disks you choose are wiped, after you \
             confirm by typing a word.",
        ),
        Line::from(""),
        Line::from(
            "The answers are saved as a plan file, so the same install can be replayed over SSH with \
             `nix-dabei apply PLAN`.",
        ),
        Line::from(""),
        Line::from(format!(
            "{} disk(s) found, {} usable.",
            model.disks.len(),
            model.disks.iter().filter(|d| d.usable()).count()
        )),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block(model, "Welcome")), area);
}

fn disks(model: &Model, frame: &mut Frame, area: Rect) {
    let path_width = model.disks.iter().map(|d| d.path.chars().count()).max().unwrap_or(20).clamp(20, 44) as u16;
    let rows = model.disks.iter().enumerate().map(|(index, disk)| {
        let mark = if model.chosen.contains(&index) {
            if model.alongside {
                "[A]"
            } else {
                "[x]"
            }
        } else if disk.usable() {
            "[ ]"
        } else {
            " - "
        };
        let usage = match &disk.alongside {
            _ if !disk.usable() => disk.in_use.join("; "),
            Some(room) => format!("{} free", human(room.largest_free)),
            None => "free".to_string(),
        };
        let mut style = if disk.usable() { Style::new() } else { Style::new().fg(Color::DarkGray) };
        if index == model.disk_cursor {
            style = style.add_modifier(Modifier::REVERSED);
        }
        Row::new(vec![
            mark.to_string(),
            disk.path.clone(),
            disk.model.clone(),
            disk.serial.clone(),
            human(disk.size),
            usage,
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        // The path is what identifies a disk: as wide as the longest one (within reason), then the usage.
        [
            Constraint::Length(3),
            Constraint::Length(path_width),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(vec!["", "PATH", "MODEL", "SERIAL", "SIZE", "USE"]).style(Style::new().add_modifier(Modifier::BOLD)),
    );
    let title = if model.alongside {
        "Install alongside: the chosen disk's partitions stay"
    } else {
        "Choose the disks to install on (they will be wiped)"
    };
    let outer = block(model, title);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    // The table cuts a long in-use reason: the selected disk's is shown in full below it.
    let detail = model.disks.get(model.disk_cursor).map(|disk| {
        if let (true, Some(room)) = (disk.usable(), &disk.alongside) {
            format!(
                "{}: {}; a installs beside its {} partition(s), into {} of free space, instead of wiping it",
                disk.path,
                human(disk.size),
                room.kept.partitions.len(),
                human(room.largest_free)
            )
        } else if disk.usable() {
            format!("{}: free, {}", disk.path, human(disk.size))
        } else {
            format!("{} is in use: {}", disk.path, disk.in_use.join("; "))
        }
    });
    let detail_height = detail.as_ref().map_or(0, |text| {
        let width = inner.width.max(1) as usize;
        (text.chars().count().div_ceil(width) as u16).clamp(1, 4) + 1
    });
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_height)]).areas(inner);
    frame.render_widget(table, table_area);
    if let Some(text) = detail {
        // A blank line apart from the table, then the text.
        frame.render_widget(Paragraph::new(format!("\n{text}")).wrap(Wrap { trim: true }), detail_area);
    }
}

fn kind_name(kind: PresetKind) -> &'static str {
    match kind {
        PresetKind::Single => "ZFS on one disk",
        PresetKind::Mirror => "ZFS mirror (an ESP on every disk)",
        PresetKind::Ext4 => "ext4 on one disk",
    }
}

fn encryption_name(encryption: Encryption) -> &'static str {
    match encryption {
        Encryption::None => "none",
        Encryption::ZfsNative => "ZFS native (passphrase)",
        Encryption::Luks => "LUKS2 (passphrase)",
    }
}

fn layout(model: &Model, frame: &mut Frame, area: Rect) {
    let choice = &model.layout;
    let swap = match SWAP_CHOICES[choice.swap] {
        0 => "none".to_string(),
        gib => format!("{gib} GiB on every disk"),
    };
    let ashift = match ASHIFT_CHOICES[choice.ashift] {
        0 => "from the disks' sector size".to_string(),
        value => value.to_string(),
    };
    let zfs = choice.kind != PresetKind::Ext4;
    let fields = [
        ("Layout", kind_name(choice.kind).to_string()),
        ("Encryption", encryption_name(choice.encryption).to_string()),
        ("Swap", swap),
        ("Pool ashift", if zfs { ashift } else { "(no ZFS)".into() }),
        ("Compression", if zfs { COMPRESSION_CHOICES[choice.compression].to_string() } else { "(no ZFS)".into() }),
    ];
    let items: Vec<ListItem> = fields
        .iter()
        .enumerate()
        .map(|(index, (name, value))| {
            let style =
                if index == choice.field { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
            ListItem::new(format!("{name:<12} < {value} >")).style(style)
        })
        .collect();
    let chosen: Vec<String> = model.chosen.iter().filter_map(|&i| model.disks.get(i)).map(|d| d.path.clone()).collect();
    let [list, info] = Layout::vertical([Constraint::Length(7), Constraint::Min(1)]).areas(area);
    frame.render_widget(List::new(items).block(block(model, "Layout")), list);
    frame.render_widget(Paragraph::new(format!("Disks: {}", chosen.join(", "))).wrap(Wrap { trim: true }), info);
}

fn field_line(label: &str, text: &str, focused: bool, hidden: bool) -> Line<'static> {
    let shown = if hidden { "*".repeat(text.chars().count()) } else { text.to_string() };
    let cursor = if focused { "_" } else { "" };
    let style = if focused { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
    Line::from(vec![Span::raw(format!("{label:<14}")), Span::styled(format!("{shown}{cursor}"), style)])
}

fn host(model: &Model, frame: &mut Frame, area: Rect) {
    let lines = vec![
        field_line("Host name", &model.hostname.text, model.host_field == 0, false),
        Line::from(""),
        field_line("Flake", &model.flake.text, model.host_field == 1, false),
        Line::from(""),
        Line::from("The flake is installed with nixos-install after the disks are ready, such as"),
        Line::from("github:me/machines#web1. Leave it empty to only prepare and mount the disks."),
    ];
    frame.render_widget(Paragraph::new(lines).block(block(model, "Host")), area);
}

fn passphrase(model: &Model, frame: &mut Frame, area: Rect) {
    let lines = vec![
        field_line("Passphrase", &model.passphrase[0].masked(), model.passphrase_field == 0, true),
        Line::from(""),
        field_line("Repeat it", &model.passphrase[1].masked(), model.passphrase_field == 1, true),
        Line::from(""),
        Line::from("It is asked for at every boot. It is kept in memory only and never written."),
    ];
    frame.render_widget(Paragraph::new(lines).block(block(model, "Passphrase")), area);
}

fn review(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(review) = &model.review else {
        let text = if model.notice.is_some() {
            "The plan could not be prepared; press Esc to change the answers."
        } else {
            "Preparing the plan..."
        };
        frame.render_widget(Paragraph::new(text).block(block(model, "Review")), area);
        return;
    };
    let stays = review.wipes.is_empty() && !review.stays.is_empty();
    let wipe_lines = if stays { review.stays.len() } else { review.wipes.len().max(1) } as u16 + 2;
    let [steps_area, wipes_area, confirm_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(wipe_lines), Constraint::Length(3)]).areas(area);
    let items: Vec<ListItem> = review
        .steps
        .iter()
        .skip(model.review_scroll.min(review.steps.len().saturating_sub(1)))
        .map(|step| {
            let style =
                if step.destructive { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() };
            ListItem::new(format!("{:<8} {}", step.state, step.description)).style(style)
        })
        .collect();
    let saved = review.saved_to.as_deref().map(|p| format!(" - plan saved to {p}")).unwrap_or_default();
    let title = format!("{} steps{saved}", review.steps.len());
    frame.render_widget(List::new(items).block(block(model, &title)), steps_area);
    let wipes: Vec<Line> = if review.wipes.is_empty() {
        vec![Line::from("No disk will be wiped.")]
    } else {
        review
            .wipes
            .iter()
            .map(|w| {
                Line::from(Span::styled(
                    format!("{}  {}  serial {}  {}", w.device, w.model, w.serial, human(w.size)),
                    Style::new().fg(Color::Red),
                ))
            })
            .collect()
    };
    if stays {
        let lines: Vec<Line> = review.stays.iter().map(|line| Line::from(line.as_str())).collect();
        frame.render_widget(
            Paragraph::new(lines).block(block(model, "No disk is wiped; these partitions stay as they are")),
            wipes_area,
        );
    } else {
        frame.render_widget(Paragraph::new(wipes).block(block(model, "These disks will be WIPED")), wipes_area);
    }
    frame.render_widget(
        Paragraph::new(field_line(&format!("Type {:?}: ", model.confirm_word()), &model.confirm.text, true, false))
            .block(block(model, "Confirm")),
        confirm_area,
    );
}

fn run(model: &Model, frame: &mut Frame, area: Rect) {
    let state = &model.run;
    let [gauge_area, current_area, log_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Length(1), Constraint::Min(3)]).areas(area);
    let ratio = if state.total == 0 { 0.0 } else { state.done as f64 / state.total as f64 };
    let label = format!("{}/{} steps  {}:{:02}", state.done, state.total, state.elapsed / 60, state.elapsed % 60);
    frame.render_widget(
        Gauge::default().block(block(model, "Progress")).ratio(ratio.min(1.0)).label(label).use_unicode(!model.ascii),
        gauge_area,
    );
    let current = state.current.as_deref().map_or(String::new(), |c| format!("Now: {c}"));
    frame.render_widget(Paragraph::new(current), current_area);
    let height = log_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> =
        state.log.iter().skip(state.log.len().saturating_sub(height)).map(|l| Line::from(l.as_str())).collect();
    frame.render_widget(Paragraph::new(lines).block(block(model, "Log")), log_area);
}

fn result(model: &Model, frame: &mut Frame, area: Rect) {
    let saved = model.review.as_ref().and_then(|r| r.saved_to.clone()).unwrap_or_else(|| "(not saved)".into());
    let lines: Vec<Line> = match &model.outcome {
        Some(Outcome::Success { applied, skipped }) => {
            let mut lines = vec![
                Line::from(Span::styled(
                    if model.dry_run { "Dry run finished: nothing was written." } else { "Installed." },
                    Style::new().add_modifier(Modifier::BOLD),
                )),
                Line::from(if model.dry_run {
                    format!("{applied} step(s) would run on the real disks, {skipped} already done.")
                } else {
                    format!("{applied} step(s) applied, {skipped} already done.")
                }),
                Line::from(""),
                Line::from(format!("The plan is saved at {saved}.")),
                Line::from("Replay it elsewhere with: nix-dabei apply PLAN --yes-wipe-all"),
            ];
            if model.dry_run {
                // Nothing to say about the disks: they were not touched.
            } else if model.flake.text.trim().is_empty() {
                lines.push(Line::from("The system is mounted at /mnt. Next: nix-dabei unmount PLAN, then reboot."));
            } else {
                lines.push(Line::from("The disks are unmounted and the pools exported: reboot into the new system."));
            }
            lines
        }
        Some(Outcome::Failure(error)) => {
            let mut lines = vec![
                Line::from(Span::styled(
                    "The install stopped.",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                )),
                Line::from(error.clone()),
                Line::from(""),
                Line::from("Everything is left mounted for inspection; r runs again and resumes."),
                Line::from(""),
            ];
            lines.extend(model.run.log.iter().rev().take(8).rev().map(|l| Line::from(l.clone())));
            lines
        }
        None => vec![Line::from("")],
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block(model, "Result")), area);
}
