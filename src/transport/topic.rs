//! AMQP topic matching: routing keys are dot-separated words; in a binding
//! pattern `*` matches exactly one word and `#` matches zero or more.
//!
//! ```
//! use enoki::transport::topic::matches;
//!
//! assert!(matches("greeter.*", "greeter.hello"));
//! assert!(!matches("greeter.*", "greeter.hello.x"));
//! assert!(matches("#", "anything.at.all"));
//! assert!(matches("a.#.z", "a.z"));
//! assert!(matches("a.#.z", "a.b.c.z"));
//! ```

/// Whether `routing_key` matches the binding `pattern`. Allocation-free.
pub fn matches(pattern: &str, routing_key: &str) -> bool {
    if !has_wildcards(pattern) {
        return pattern == routing_key;
    }
    matches_words(Some(pattern), Some(routing_key))
}

/// Whether a pattern contains `*` or `#` words (otherwise it matches only
/// itself).
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.split('.').any(|word| word == "*" || word == "#")
}

/// The first word and the rest (`None` when there are no more words).
fn split(words: &str) -> (&str, Option<&str>) {
    match words.find('.') {
        Some(i) => (&words[..i], Some(&words[i + 1..])),
        None => (words, None),
    }
}

/// Matches the remaining pattern words against the remaining key words.
fn matches_words(pattern: Option<&str>, key: Option<&str>) -> bool {
    let Some(pattern) = pattern else {
        return key.is_none();
    };
    let (word, rest) = split(pattern);
    if word == "#" {
        // `#` swallows zero words, or one more word and stays.
        if matches_words(rest, key) {
            return true;
        }
        return match key {
            Some(key) => matches_words(Some(pattern), split(key).1),
            None => false,
        };
    }
    match key {
        Some(key) => {
            let (first, key_rest) = split(key);
            (word == "*" || word == first) && matches_words(rest, key_rest)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn rabbitmq_topic_semantics() {
        let cases = [
            ("greeter.*", "greeter.hello", true),
            ("greeter.*", "greeter", false),
            ("greeter.*", "other.hello", false),
            ("*", "greeted", true),
            ("*", "a.b", false),
            ("#", "", true),
            ("#", "a.b.c", true),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.d", false),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("a.*.#", "a.b.c", true),
            ("greeted", "greeted", true),
            ("greeted", "greeted2", false),
            ("a.b*", "a.bc", false),
            ("a.b*", "a.b*", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
