//! Text from the far side, made safe to show here. Whatever the far side prints (its OS name, disk
//! models, the plan it made, the review, its errors) could carry terminal escape sequences that retitle,
//! clear and redraw the local screen (a fake review just before the wipe prompt) or set the clipboard
//! (OSC 52). Each is shown as text instead.

/// `text` with every control character but the newline (C0, DEL, C1: every escape sequence starts with
/// one) and every bidirectional formatting character (which reorder what follows them on the line)
/// written as its `\u{..}` escape.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || !(c.is_control() || is_bidi_control(c)) {
            out.push(c);
        } else {
            out.push_str(&c.escape_unicode().to_string());
        }
    }
    out
}

/// [`printable`] for a value that is one line: newlines are escaped too.
pub fn printable_line(text: &str) -> String {
    printable(text).replace('\n', "\\u{a}")
}

/// Unicode's explicit bidirectional formatting characters (marks, embeddings, overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Every string inside a JSON value made [`printable`], in place: events from the far side are shown by
/// the same code as local ones.
pub fn printable_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => *text = printable(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(printable_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(printable_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_overrides_are_shown_not_obeyed() {
        // Clear the screen and home the cursor; set the window title; put text on the clipboard.
        let hostile = "Ubuntu\u{1b}[2J\u{1b}[H\u{1b}]0;title\u{7}\u{1b}]52;c;cm0gLXJmIH4=\u{7}\r\u{9b}31m";
        let shown = printable(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "Ubuntu\\u{1b}[2J\\u{1b}[H\\u{1b}]0;title\\u{7}\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}\\u{d}\\u{9b}31m"
        );
        assert_eq!(printable("disk\u{202e}txt.exe"), "disk\\u{202e}txt.exe");
        assert_eq!(printable("two\nlines"), "two\nlines");
        assert_eq!(printable_line("two\nlines\t!"), "two\\u{a}lines\\u{9}!");
        let mut value = serde_json::json!({"event": "note", "list": ["a\u{1b}c"], "n": 1});
        printable_json(&mut value);
        assert_eq!(value, serde_json::json!({"event": "note", "list": ["a\\u{1b}c"], "n": 1}));
    }
}
