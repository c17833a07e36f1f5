//! Line framing between stdio and the SDK: every input line that is not JSON is answered
//! with a JSON-RPC parse error (`-32700`, id `null`), as JSON-RPC 2.0 requires; `rmcp`
//! drops such lines without a word, leaving a client waiting for an answer that never
//! comes. Lines that are JSON go to `rmcp` unchanged (it answers the ones that are not
//! requests with `-32600` itself). Answers and parse errors are written to stdout whole
//! lines at a time, so they never interleave.

use std::future::Future;
use std::io;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// Longest input line accepted with its newline (16 MiB, the SDK's own limit, which counts
/// the newline); a longer one is answered as invalid and skipped without being held.
pub(crate) const MAX_LINE: usize = 16 << 20;

/// Room in each in-memory pipe between the framing tasks and `rmcp`.
const PIPE: usize = 64 * 1024;

/// What `rmcp` reads from and writes to: one end each of two in-memory pipes, fed and
/// drained by the two tasks.
pub(crate) type Transport = (DuplexStream, DuplexStream);

/// Wraps the real stdin and stdout. Returns the transport to give `rmcp` and the two tasks
/// to spawn: the input task ends at end of input (closing `rmcp`'s input), the output task
/// once `rmcp` has closed its output and every line has been written and flushed.
pub(crate) fn filtered<R, W>(
    stdin: R,
    stdout: W,
) -> (
    Transport,
    impl Future<Output = io::Result<()>> + Send + 'static,
    impl Future<Output = io::Result<()>> + Send + 'static,
)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (sdk_input, to_sdk) = tokio::io::duplex(PIPE);
    let (sdk_output, from_sdk) = tokio::io::duplex(PIPE);
    let (errors_tx, errors_rx) = mpsc::channel::<String>(64);
    let input = filter_input(stdin, to_sdk, errors_tx);
    let output = write_output(from_sdk, errors_rx, stdout);
    ((sdk_input, sdk_output), input, output)
}

/// The JSON-RPC error for a line that is not a message.
fn error_line(code: i64, message: &str) -> String {
    json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } })
        .to_string()
}

/// What to do with one complete input line (without its newline).
enum Verdict {
    Forward,
    Answer(String),
}

fn judge(line: &[u8], overflowed: bool) -> Verdict {
    if overflowed {
        return Verdict::Answer(error_line(
            -32600,
            &format!("Invalid request: a message may be at most {} MiB", MAX_LINE >> 20),
        ));
    }
    // As `rmcp` reads a line: a UTF-8 byte order mark is skipped, and a line of JSON
    // whitespace only is ignored.
    let body = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return Verdict::Forward;
    }
    // Parsed as text and into values, as the SDK parses it, so that invalid UTF-8 and lone
    // surrogate escapes inside strings are caught here too.
    let parsed =
        std::str::from_utf8(body).map_err(|e| format!("the line is not UTF-8 ({e})")).and_then(
            |text| serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string()),
        );
    match parsed {
        Ok(_) => Verdict::Forward,
        Err(e) => Verdict::Answer(error_line(-32700, &format!("Parse error: {e}"))),
    }
}

async fn filter_input<R, W>(stdin: R, mut to_sdk: W, errors: mpsc::Sender<String>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(stdin);
    let mut line: Vec<u8> = Vec::new();
    let mut overflowed = false;
    loop {
        let chunk = reader.fill_buf().await?;
        let at_end = chunk.is_empty();
        let (part, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, at_end),
        };
        // `line` plus its newline must fit in MAX_LINE.
        if !overflowed && line.len() + part.len() >= MAX_LINE {
            overflowed = true;
            line = Vec::new();
        }
        if !overflowed {
            line.extend_from_slice(part);
        }
        let used = part.len() + usize::from(complete && !at_end);
        reader.consume(used);
        if complete && !(at_end && line.is_empty() && !overflowed) {
            match judge(&line, overflowed) {
                Verdict::Forward => {
                    line.push(b'\n');
                    to_sdk.write_all(&line).await?;
                    to_sdk.flush().await?;
                }
                Verdict::Answer(answer) => {
                    tracing::debug!("answered an input line that is not JSON-RPC");
                    if errors.send(answer).await.is_err() {
                        return Ok(());
                    }
                }
            }
            line.clear();
            overflowed = false;
        }
        if at_end {
            // Closing our end of the pipe is `rmcp`'s end of input.
            to_sdk.shutdown().await?;
            return Ok(());
        }
    }
}

async fn write_output<W>(
    from_sdk: DuplexStream,
    mut errors: mpsc::Receiver<String>,
    mut stdout: W,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut answers = BufReader::new(from_sdk).lines();
    let (mut sdk_open, mut errors_open) = (true, true);
    while sdk_open || errors_open {
        let line = tokio::select! {
            next = answers.next_line(), if sdk_open => match next? {
                Some(line) => line,
                None => {
                    sdk_open = false;
                    // Parse errors still queued are answers to lines the session read.
                    errors_open = false;
                    while let Ok(line) = errors.try_recv() {
                        write_line(&mut stdout, &line).await?;
                    }
                    continue;
                }
            },
            next = errors.recv(), if errors_open => match next {
                Some(line) => line,
                None => {
                    errors_open = false;
                    continue;
                }
            },
        };
        write_line(&mut stdout, &line).await?;
    }
    Ok(())
}

async fn write_line<W: AsyncWrite + Unpin>(stdout: &mut W, line: &str) -> io::Result<()> {
    stdout.write_all(line.as_bytes()).await?;
    stdout.write_all(b"\n").await?;
    stdout.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<String>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (stdout_w, stdout_r) = tokio::io::duplex(1 << 20);
            let ((mut sdk_in, mut sdk_out), input_task, output_task) =
                filtered(std::io::Cursor::new(input.to_vec()), stdout_w);
            let input_task = tokio::spawn(input_task);
            let output_task = tokio::spawn(output_task);
            // The "SDK": reads everything forwarded, answers nothing but one line at the end.
            let mut forwarded = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut sdk_in, &mut forwarded).await.unwrap();
            sdk_out.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n").await.unwrap();
            drop(sdk_out);
            input_task.await.unwrap().unwrap();
            output_task.await.unwrap().unwrap();
            let mut out = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stdout_r), &mut out)
                .await
                .unwrap();
            let forwarded = String::from_utf8(forwarded).unwrap();
            (
                // Split on newlines only: forwarded lines are byte-exact, `\r` included.
                forwarded.split_terminator('\n').map(str::to_owned).collect(),
                out.lines().map(str::to_owned).collect(),
            )
        })
    }

    #[test]
    fn json_lines_pass_unchanged_and_the_rest_get_a_parse_error() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\nnot json\n\n[1,2\n\xff\xfe\n{\"a\":1}";
        let (forwarded, out) = run(input);
        assert_eq!(
            forwarded,
            ["{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", "", "{\"a\":1}"]
        );
        let errors: Vec<serde_json::Value> = out
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|m: &serde_json::Value| m.get("error").is_some())
            .collect();
        assert_eq!(errors.len(), 3, "{out:?}");
        for e in &errors {
            assert_eq!(e["jsonrpc"], "2.0");
            assert!(e["id"].is_null());
            assert_eq!(e["error"]["code"], -32700);
        }
        assert!(
            out.contains(&"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_owned()),
            "{out:?}"
        );
    }

    #[test]
    fn lines_the_sdk_would_drop_get_an_answer_and_lines_it_reads_pass() {
        let input = "\u{feff}{\"a\":1}\n\"\\ud800\"\n\u{c}\n \t\r\n".as_bytes().to_vec();
        let (forwarded, out) = run(&input);
        assert_eq!(
            forwarded,
            ["\u{feff}{\"a\":1}", " \t\r"],
            "BOM lines and blank lines pass unchanged"
        );
        let codes: Vec<i64> = out
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|m| m["error"]["code"].as_i64())
            .collect();
        assert_eq!(codes, [-32700, -32700], "a lone surrogate and a form feed: {out:?}");
    }

    #[test]
    fn the_limit_counts_the_newline() {
        // A JSON string exactly MAX_LINE - 1 bytes long fits with its newline.
        let mut fits = vec![b'"'];
        fits.resize(MAX_LINE - 2, b'x');
        fits.push(b'"');
        assert_eq!(fits.len(), MAX_LINE - 1);
        let mut too_long = fits.clone();
        too_long.insert(1, b'x');
        let mut input = fits.clone();
        input.push(b'\n');
        input.extend_from_slice(&too_long);
        input.push(b'\n');
        let (forwarded, out) = run(&input);
        assert_eq!(forwarded.len(), 1);
        assert_eq!(forwarded[0].len(), MAX_LINE - 1);
        let first: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(first["error"]["code"], -32600, "one byte more is refused");
    }

    #[test]
    fn an_oversized_line_is_refused_without_being_kept() {
        let mut input = vec![b'"'; MAX_LINE + 10];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        let (forwarded, out) = run(&input);
        assert_eq!(forwarded, ["{\"ok\":true}"]);
        let first: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(first["error"]["code"], -32600, "{out:?}");
    }
}
