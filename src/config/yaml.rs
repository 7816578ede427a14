//! nameko's `${VAR}` and `${VAR:default}` substitution in YAML config
//! files, with its quirks (see the [module docs](super)).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub(super) fn resolve(yaml: serde_yaml_ng::Value) -> Result<Value> {
    use serde_yaml_ng::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)?,
        Y::String(s) if s.contains("${") => substituted(s, false)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(resolve).collect::<Result<_>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(Error::Config(format!(
                            "mapping keys must be scalars, got {other:?}"
                        )));
                    }
                };
                out.insert(key, resolve(value)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), tagged.value) {
                ("env_var", Y::String(s)) => substituted(s, false)?,
                ("raw_env_var", Y::String(s)) => substituted(s, true)?,
                (_, other) => {
                    return Err(Error::Config(format!("unsupported tag {tag} on {other:?}")));
                }
            }
        }
    })
}

/// nameko's `env_var_constructor`: a scalar with nothing substituted stays
/// the string it was; otherwise the result is reparsed, unless `raw`.
fn substituted(text: String, raw: bool) -> Result<Value> {
    let value = substitute(&text)?;
    if value == text || raw {
        Ok(Value::String(value))
    } else {
        reparse(&value)
    }
}

/// A substituted value is parsed again as YAML (nameko's behaviour: an
/// empty result is null). Text that is not valid YAML after substitution
/// stays a string (nameko would fail to load the file).
fn reparse(text: &str) -> Result<Value> {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(yaml) => resolve_plain(yaml),
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

fn resolve_plain(yaml: serde_yaml_ng::Value) -> Result<Value> {
    Ok(serde_json::to_value(yaml)?)
}

/// Replaces `${VAR}` and `${VAR:default}` (defaults may nest); a missing
/// variable with no default becomes the empty string, as in nameko. As with
/// nameko's pattern, a variable name is any run of characters other than
/// `}`, `:` and whitespace; text that does not match (`${}`, `${ X }`, an
/// unclosed `${`) is left as it is.
pub fn substitute(text: &str) -> Result<String> {
    substitute_with(text, &|name| std::env::var(name).ok())
}

fn substitute_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let body_start = start + 2;
        // Find the matching `}`, allowing nested `${...}` in the default.
        let mut depth = 1;
        let mut end = None;
        let bytes = rest.as_bytes();
        let mut i = body_start;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                depth += 1;
                i += 2;
                continue;
            }
            if bytes[i] == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let Some(end) = end else {
            // Unclosed: nothing more to substitute.
            break;
        };
        let body = &rest[body_start..end];
        let (name, default) = match body.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '}') {
            // Not a variable reference: keep `${` and go on after it.
            out.push_str("${");
            rest = &rest[body_start..];
            continue;
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(&substitute_with(default, lookup)?),
            (None, None) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("rabbit".into()),
            "PORT" => Some("5673".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_like_nameko() {
        let s = |t| substitute_with(t, &env).unwrap();
        assert_eq!(s("amqp://${HOST}:${PORT}"), "amqp://rabbit:5673");
        assert_eq!(s("${MISSING:guest}"), "guest");
        assert_eq!(s("${MISSING}"), "");
        assert_eq!(s("${MISSING:${HOST:x}}"), "rabbit");
        assert_eq!(s("pa$$word"), "pa$$word");
        assert_eq!(s("${HOST"), "${HOST");
        assert_eq!(s("a ${} b ${ HOST } ${HOST}"), "a ${} b ${ HOST } rabbit");
        assert_eq!(s("${my.var-1:d}"), "d");
    }
}
