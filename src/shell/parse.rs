//! The shell's language: one expression a line, Python-flavoured.
//!
//! ```text
//! line    := expr | ""
//! expr    := name ("." name)* ["(" [arg ("," arg)* [","]] ")"]
//! arg     := name "=" value | value
//! value   := string | number | true | false | null | True | False | None
//!          | "[" values "]" | "(" values ")" | "{" [key ":" value ("," key ":" value)*] "}"
//! string  := "..." (JSON escapes) | '...' (the same escapes, and \')
//! ```
//!
//! Every value is JSON (tuples become arrays). The parser is bounded: a
//! line longer than [`MAX_LINE_LEN`] or nesting deeper than [`MAX_DEPTH`]
//! is a syntax error, never a stack overflow.

use serde_json::{Map, Number, Value};

/// The longest line the shell reads, in bytes.
pub const MAX_LINE_LEN: usize = 256 * 1024;

/// How deep values may nest.
pub const MAX_DEPTH: usize = 64;

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    /// The dotted name, e.g. `["rpc", "greeter", "hello"]`.
    pub(crate) path: Vec<String>,
    /// The arguments when it is a call.
    pub(crate) call: Option<CallArgs>,
}

/// The arguments of a call.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CallArgs {
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
}

/// A line that is not an expression: the message and the column (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) column: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (column {})", self.message, self.column)
    }
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
pub(crate) fn parse_line(line: &str) -> Result<Option<Expr>, SyntaxError> {
    if line.len() > MAX_LINE_LEN {
        return Err(SyntaxError {
            message: format!(
                "line too long: {} bytes (at most {MAX_LINE_LEN})",
                line.len()
            ),
            column: 1,
        });
    }
    let mut p = Parser {
        text: line,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.at_end() || p.peek() == Some('#') {
        return Ok(None);
    }
    let expr = p.expr()?;
    p.skip_ws();
    if !p.at_end() && p.peek() != Some('#') {
        return Err(p.error("unexpected text after the expression"));
    }
    Ok(Some(expr))
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            column: self.text[..self.pos.min(self.text.len())].chars().count() + 1,
        }
    }

    fn expect(&mut self, want: char) -> Result<(), SyntaxError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == want => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.error(format!("expected `{want}`, found `{c}`"))),
            None => Err(self.error(format!("expected `{want}`, found the end of the line"))),
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_alphabetic() || c == '_' => {}
            Some(c) => return Err(self.error(format!("expected a name, found `{c}`"))),
            None => return Err(self.error("expected a name, found the end of the line")),
        }
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            self.bump();
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        let mut path = vec![self.name()?];
        loop {
            self.skip_ws();
            if self.peek() == Some('.') {
                self.bump();
                path.push(self.name()?);
            } else {
                break;
            }
        }
        self.skip_ws();
        let call = if self.peek() == Some('(') {
            self.bump();
            Some(self.call_args()?)
        } else {
            None
        };
        Ok(Expr { path, call })
    }

    fn call_args(&mut self) -> Result<CallArgs, SyntaxError> {
        let mut out = CallArgs::default();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(')') => {
                    self.bump();
                    return Ok(out);
                }
                None => return Err(self.error("unclosed `(`: expected `)`")),
                Some(_) => {}
            }
            if let Some(key) = self.keyword() {
                if out.kwargs.contains_key(&key) {
                    return Err(self.error(format!("keyword argument repeated: {key}")));
                }
                let value = self.value()?;
                out.kwargs.insert(key, value);
            } else {
                if !out.kwargs.is_empty() {
                    return Err(self.error("positional argument follows keyword argument"));
                }
                out.args.push(self.value()?);
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(')') => {}
                Some(c) => return Err(self.error(format!("expected `,` or `)`, found `{c}`"))),
                None => return Err(self.error("unclosed `(`: expected `)`")),
            }
        }
    }

    /// `name =` (not `==`): consumes it and returns the name.
    fn keyword(&mut self) -> Option<String> {
        let save = self.pos;
        let Ok(name) = self.name() else {
            self.pos = save;
            return None;
        };
        self.skip_ws();
        if self.rest().starts_with('=') && !self.rest().starts_with("==") {
            self.bump();
            Some(name)
        } else {
            self.pos = save;
            None
        }
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("expected a value, found the end of the line")),
            Some('"') | Some('\'') => self.string().map(Value::String),
            Some('[') => self.sequence('[', ']'),
            Some('(') => self.sequence('(', ')'),
            Some('{') => self.object(),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let at = self.pos;
                let word = self.name()?;
                match word.as_str() {
                    "true" | "True" => Ok(Value::Bool(true)),
                    "false" | "False" => Ok(Value::Bool(false)),
                    "null" | "None" => Ok(Value::Null),
                    _ => {
                        self.pos = at;
                        Err(self.error(format!(
                            "`{word}` is not a value (strings are quoted: \"{word}\")"
                        )))
                    }
                }
            }
            Some(c) => Err(self.error(format!("expected a value, found `{c}`"))),
        }
    }

    fn nest(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("values nest deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn sequence(&mut self, open: char, close: char) -> Result<Value, SyntaxError> {
        self.nest()?;
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.bump();
                break;
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                Some(c) => {
                    return Err(self.error(format!("expected `,` or `{close}`, found `{c}`")));
                }
                None => return Err(self.error(format!("unclosed `{open}`: expected `{close}`"))),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.nest()?;
        self.bump();
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.bump();
                    break;
                }
                Some('"') | Some('\'') => {}
                Some(c) => return Err(self.error(format!("expected a quoted key, found `{c}`"))),
                None => return Err(self.error("unclosed `{`: expected `}`")),
            }
            let key = self.string()?;
            self.expect(':')?;
            let value = self.value()?;
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                Some(c) => return Err(self.error(format!("expected `,` or `}}`, found `{c}`"))),
                None => return Err(self.error("unclosed `{`: expected `}`")),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(map))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let quote = self.bump().unwrap_or('"');
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error(format!("unclosed string: expected `{quote}`")));
            };
            match c {
                c if c == quote => return Ok(out),
                c if c.is_control() => {
                    return Err(self.error(format!(
                        "control character {c:?} in a string: write it as an escape"
                    )));
                }
                '\\' => {
                    let Some(escape) = self.bump() else {
                        return Err(self.error("unclosed string after `\\`"));
                    };
                    match escape {
                        '"' => out.push('"'),
                        '\'' => out.push('\''),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => out.push(self.unicode_escape()?),
                        other => return Err(self.error(format!("unknown escape `\\{other}`"))),
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// The four hex digits after `\u` (and a low surrogate after a high one).
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) {
            if self.rest().starts_with("\\u") {
                self.pos += 2;
                let low = self.hex4()?;
                if (0xDC00..0xE000).contains(&low) {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code).ok_or_else(|| self.error("bad \\u escape"));
                }
            }
            return Err(self.error("unpaired surrogate in \\u escape"));
        }
        char::from_u32(high).ok_or_else(|| self.error("bad \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.rest().get(..4).unwrap_or_default();
        match u32::from_str_radix(digits, 16) {
            Ok(code) if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos += 4;
                Ok(code)
            }
            _ => Err(self.error("expected four hex digits after \\u")),
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'))
        {
            self.bump();
        }
        let token = &self.text[start..self.pos];
        let cleaned = token.strip_prefix('+').unwrap_or(token).replace('_', "");
        if let Ok(int) = cleaned.parse::<i64>() {
            return Ok(Value::Number(int.into()));
        }
        if let Ok(int) = cleaned.parse::<u64>() {
            return Ok(Value::Number(int.into()));
        }
        match cleaned.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(number) => Ok(Value::Number(number)),
            None => {
                self.pos = start;
                Err(self.error(format!("`{token}` is not a number")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(line: &str) -> (Vec<String>, Vec<Value>, Value) {
        let expr = parse_line(line).unwrap().unwrap();
        let call = expr.call.unwrap();
        (expr.path, call.args, Value::Object(call.kwargs))
    }

    #[test]
    fn calls_with_positional_and_keyword_arguments() {
        assert_eq!(
            call(r#"rpc.greeter.hello("Ann")"#),
            (
                vec!["rpc".into(), "greeter".into(), "hello".into()],
                vec![json!("Ann")],
                json!({})
            )
        );
        assert_eq!(
            call("rpc . greeter . hello ( name = 'Ann' , )").2,
            json!({"name": "Ann"})
        );
        let (_, args, kwargs) = call(
            r#"rpc.s.m(1, -2.5, 1e3, True, None, false, [1, (2, 3)], {"a": {'b': null}}, x=7)"#,
        );
        assert_eq!(
            args,
            vec![
                json!(1),
                json!(-2.5),
                json!(1000.0),
                json!(true),
                Value::Null,
                json!(false),
                json!([1, [2, 3]]),
                json!({"a": {"b": null}})
            ]
        );
        assert_eq!(kwargs, json!({"x": 7}));
        assert_eq!(
            call(r#"f("\u00e9\n\"", 'it\'s')"#).1,
            vec![json!("é\n\""), json!("it's")]
        );
        assert_eq!(call("f(18446744073709551615)").1, vec![json!(u64::MAX)]);
    }

    #[test]
    fn names_blanks_and_comments() {
        assert_eq!(parse_line("   ").unwrap(), None);
        assert_eq!(parse_line("# a comment").unwrap(), None);
        let expr = parse_line("rpc.greeter  # what is there").unwrap().unwrap();
        assert_eq!(expr.path, ["rpc", "greeter"]);
        assert_eq!(expr.call, None);
        assert_eq!(
            parse_line("rpc.manual-service.add(1, 2)")
                .unwrap()
                .unwrap()
                .path[1],
            "manual-service"
        );
    }

    #[test]
    fn bad_lines_are_errors_with_a_column() {
        for (line, needle) in [
            ("rpc.greeter.hello(", "unclosed `(`"),
            ("rpc.greeter.hello(\"Ann\"", "unclosed `(`"),
            ("rpc.greeter.hello(\"Ann)", "unclosed string"),
            ("rpc.greeter.hello(Ann)", "`Ann` is not a value"),
            ("rpc.greeter.hello([1, 2)", "expected `,` or `]`"),
            ("rpc.greeter.hello({1: 2})", "expected a quoted key"),
            (
                "rpc.greeter.hello(a=1, 2)",
                "positional argument follows keyword",
            ),
            ("rpc.greeter.hello(a=1, a=2)", "repeated"),
            ("rpc.greeter.hello(1) 2", "unexpected text"),
            ("rpc..x", "expected a name"),
            ("rpc.x(1.2.3)", "is not a number"),
            ("rpc.x(\"\\q\")", "unknown escape"),
            ("rpc.x(\"\\ud800\")", "surrogate"),
            (")", "expected a name"),
            ("rpc.x(nan)", "is not a value"),
        ] {
            let err = parse_line(line).unwrap_err();
            assert!(err.message.contains(needle), "{line}: {err}");
            assert!(
                err.column >= 1 && err.column <= line.chars().count() + 1,
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn limits_hold_without_recursion_blowing_up() {
        let deep = format!("f({}{})", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_line(&deep).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{err}");
        let long = format!("f(\"{}\")", "x".repeat(MAX_LINE_LEN));
        assert!(
            parse_line(&long)
                .unwrap_err()
                .message
                .contains("line too long")
        );
        let ok = format!("f({}{})", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_line(&ok).is_ok());
    }

    proptest::proptest! {
        /// Any line at all: a parse or a syntax error, never a panic, and
        /// the error's column is on the line.
        #[test]
        fn any_line_parses_or_is_an_error(line in "\\PC{0,200}") {
            if let Err(err) = parse_line(&line) {
                proptest::prop_assert!(err.column >= 1 && err.column <= line.chars().count() + 1);
            }
        }

        /// Lines made of the language's own characters, which reach deeper
        /// into the parser than random text does.
        #[test]
        fn punctuation_soup_never_panics(line in "[rpc.a-z_=,:'\"\\\\()\\[\\]{} 0-9eE+-]{0,120}") {
            let _ = parse_line(&line);
        }

        /// Every JSON value, written as JSON, is read back as itself.
        #[test]
        fn json_arguments_round_trip(value in json_value()) {
            let line = format!("rpc.s.m({value}, k={value})");
            let expr = parse_line(&line).unwrap().unwrap();
            let call = expr.call.unwrap();
            proptest::prop_assert_eq!(&call.args, &vec![value.clone()]);
            proptest::prop_assert_eq!(call.kwargs.get("k"), Some(&value));
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1.0e9f64..1.0e9).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
