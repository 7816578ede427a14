//! Where the shell's lines come from: the terminal (rustyline, on a thread
//! of its own, as it blocks) or stdin read one bounded line at a time.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use super::complete::Completer;
use super::parse::MAX_LINE_LEN;

/// One line of input.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, without its end.
    Line(String),
    /// A line longer than [`MAX_LINE_LEN`] bytes (its length, at least):
    /// read to its end and dropped.
    TooLong(usize),
    /// The input cannot be read.
    Failed(std::io::Error),
}

/// The stream of lines.
#[derive(Debug)]
pub(crate) struct Lines {
    rx: mpsc::Receiver<Input>,
    /// The terminal thread prompts again when told the last line is done.
    ack: Option<std_mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    /// Lines typed on the terminal, with line editing, history and
    /// completion.
    pub(crate) fn terminal(completer: Completer) -> Lines {
        let (tx, rx) = mpsc::channel(1);
        let (ack, ack_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("enoki-shell-input".into())
            .spawn(move || terminal_loop(completer, &tx, &ack_rx))
            .ok();
        Lines {
            rx,
            ack: Some(ack),
            thread,
        }
    }

    /// Lines of stdin, each at most [`MAX_LINE_LEN`] bytes.
    pub(crate) fn stdin() -> Lines {
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("enoki-shell-stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let input = match read_line(&mut stdin, MAX_LINE_LEN) {
                        Ok(Some(input)) => input,
                        Ok(None) => break,
                        Err(err) => Input::Failed(err),
                    };
                    let failed = matches!(input, Input::Failed(_));
                    if tx.blocking_send(input).is_err() || failed {
                        break;
                    }
                }
            })
            .ok();
        Lines {
            rx,
            ack: None,
            thread: None,
        }
    }

    /// The next line; `None` at the end of the input.
    pub(crate) async fn next(&mut self) -> Option<Input> {
        self.rx.recv().await
    }

    /// The last line is handled: the terminal may prompt again.
    pub(crate) fn done(&self) {
        if let Some(ack) = &self.ack {
            let _ = ack.send(());
        }
    }

    /// Stops reading; the terminal thread saves the history first.
    pub(crate) fn close(mut self) {
        self.ack = None;
        self.rx.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The history file: `ENOKI_SHELL_HISTORY`, else `~/.enoki_shell_history`.
fn history_file() -> Option<PathBuf> {
    match std::env::var_os("ENOKI_SHELL_HISTORY") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".enoki_shell_history")),
    }
}

fn terminal_loop(completer: Completer, tx: &mpsc::Sender<Input>, ack: &std_mpsc::Receiver<()>) {
    use rustyline::error::ReadlineError;

    let config = rustyline::Config::builder()
        .max_history_size(10_000)
        .map(|b| {
            b.auto_add_history(true)
                .completion_type(rustyline::CompletionType::List)
                .build()
        });
    let editor = config.and_then(rustyline::Editor::with_config);
    let mut editor: rustyline::Editor<Completer, rustyline::history::DefaultHistory> = match editor
    {
        Ok(editor) => editor,
        Err(err) => {
            let _ = tx.blocking_send(Input::Failed(std::io::Error::other(err)));
            return;
        }
    };
    editor.set_helper(Some(completer));
    let history = history_file();
    if let Some(path) = &history {
        // A missing history file is a first run.
        let _ = editor.load_history(path);
    }
    loop {
        let input = match editor.readline(">>> ") {
            Ok(line) => Input::Line(line),
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => Input::Failed(std::io::Error::other(err)),
        };
        let failed = matches!(input, Input::Failed(_));
        if tx.blocking_send(input).is_err() || failed || ack.recv().is_err() {
            break;
        }
    }
    if let Some(path) = &history
        && let Err(err) = editor.save_history(path)
    {
        tracing::warn!(path = %path.display(), %err, "cannot save the shell history");
    }
}

/// Reads one line of at most `max` bytes (a longer one is read to its end
/// and reported as [`Input::TooLong`], so memory stays bounded). `None` at
/// the end of the input.
pub(crate) fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Option<Input>> {
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if chunk.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let (part, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        total = total.saturating_add(part.len());
        if !too_long && line.len() + part.len() > max {
            too_long = true;
            line = Vec::new();
        }
        if !too_long {
            line.extend_from_slice(part);
        }
        let used = part.len() + usize::from(ends);
        reader.consume(used);
        if ends {
            // An empty line still counts as a line.
            total = total.max(1);
            break;
        }
    }
    if too_long {
        return Ok(Some(Input::TooLong(total)));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Input::Line(
        String::from_utf8_lossy(&line).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(7, text);
        let mut out = Vec::new();
        while let Some(input) = read_line(&mut reader, max).unwrap() {
            out.push(match input {
                Input::Line(line) => line,
                Input::TooLong(n) => format!("<too long: {n}>"),
                Input::Failed(err) => format!("<failed: {err}>"),
            });
        }
        out
    }

    #[test]
    fn lines_are_bounded_and_a_long_one_is_skipped_to_its_end() {
        assert_eq!(lines(b"a\n\nbc\r\nlast", 10), ["a", "", "bc", "last"]);
        assert_eq!(
            lines(b"0123456789abcdef\nok\n", 10),
            ["<too long: 16>", "ok"]
        );
        assert_eq!(lines(b"0123456789\n", 10), ["0123456789"]);
        assert!(lines(b"", 10).is_empty());
        assert_eq!(lines(b"\xff\n", 10), ["\u{fffd}"]);
    }
}
