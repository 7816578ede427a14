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
//!
//! The matcher is iterative (no recursion, so no stack to overflow) and
//! never backtracks further than the last `#` it passed: it takes at most
//! (words in the pattern + 1) × (words in the key + 1) steps, and linear
//! time on patterns with at most one `#`. With both bounded by AMQP's 255
//! bytes ([`MAX_NAME_LEN`](super::MAX_NAME_LEN), which every transport
//! enforces), the worst case is a few thousand word comparisons.

/// Whether `routing_key` matches the binding `pattern`. Allocation-free.
pub fn matches(pattern: &str, routing_key: &str) -> bool {
    if !has_wildcards(pattern) {
        return pattern == routing_key;
    }
    matches_pattern(pattern, routing_key)
}

/// [`matches`] for a `pattern` known to have wildcards (a broker sorts its
/// bindings once, when they are made).
pub(crate) fn matches_pattern(pattern: &str, routing_key: &str) -> bool {
    let mut pattern_words = Words::new(pattern);
    let mut key_words = Words::new(routing_key);
    // Where to resume after the last `#`: the pattern after it, and the key
    // at the first word that `#` has not swallowed yet.
    let mut resume: Option<(Words<'_>, Words<'_>)> = None;
    loop {
        let key_before = key_words;
        let Some(key) = key_words.next() else {
            // The key is used up: the rest of the pattern must be `#`s.
            return pattern_words.all(|word| word == "#");
        };
        match pattern_words.next() {
            Some("#") => {
                // `#` swallows nothing for now; remember where it was.
                resume = Some((pattern_words, key_before));
                key_words = key_before;
            }
            Some(word) if word == "*" || word == key => {}
            _ => match &mut resume {
                // Let the last `#` swallow one more word and try again.
                Some((after_hash, at_key)) => {
                    at_key.next();
                    pattern_words = *after_hash;
                    key_words = *at_key;
                }
                None => return false,
            },
        }
    }
}

/// Whether a pattern contains `*` or `#` words (otherwise it matches only
/// itself).
pub fn has_wildcards(pattern: &str) -> bool {
    Words::new(pattern).any(|word| word == "*" || word == "#")
}

/// The first word of a key or pattern.
pub(crate) fn first_word(text: &str) -> &str {
    Words::new(text).next().unwrap_or_default()
}

/// The words of a key or pattern, as a cheap copyable cursor. `""` is one
/// empty word, as in RabbitMQ.
#[derive(Debug, Clone, Copy)]
struct Words<'a> {
    rest: Option<&'a str>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Words { rest: Some(text) }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        // Words are short: a plain byte scan beats a memchr set-up.
        match text.bytes().position(|b| b == b'.') {
            Some(i) => {
                self.rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                self.rest = None;
                Some(text)
            }
        }
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
            ("*", "", true),
            ("#", "", true),
            ("#", "a.b.c", true),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.d", false),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("a.*.#", "a.b.c", true),
            ("#.#", "", true),
            ("#.*.#", "a", true),
            ("#.*.#", "", true),
            ("a.#.b.#.c", "a.b.c", true),
            ("a.#.b.#.c", "a.x.b.y.z.c", true),
            ("a.#.b.#.c", "a.c.b", false),
            ("greeted", "greeted", true),
            ("greeted", "greeted2", false),
            ("a.b*", "a.bc", false),
            ("a.b*", "a.b*", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }

    #[test]
    fn many_hashes_do_not_blow_up() {
        // 50,000 `#` words: once a stack overflow, now one pass.
        let pattern = format!("clock{}", ".#".repeat(50_000));
        assert!(matches(&pattern, "clock.tick"));
        let pattern = format!("{}.z", ["#", "*"].repeat(20_000).join("."));
        assert!(!matches(&pattern, "a.b.c"));
    }

    /// The obvious recursive matcher, as a reference for small inputs.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(&"#"), _) => {
                reference(&pattern[1..], key) || (!key.is_empty() && reference(pattern, &key[1..]))
            }
            (Some(_), None) => false,
            (Some(&word), Some(&first)) => {
                (word == "*" || word == first) && reference(&pattern[1..], &key[1..])
            }
        }
    }

    fn words(
        max: usize,
        alphabet: &'static [&'static str],
    ) -> impl Strategy<Value = Vec<&'static str>> {
        proptest::collection::vec(proptest::sample::select(alphabet), 1..=max)
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_the_reference(
            pattern in words(8, &["a", "b", "", "*", "#"]),
            key in words(8, &["a", "b", ""]),
        ) {
            let (p, k) = (pattern.join("."), key.join("."));
            prop_assert_eq!(matches(&p, &k), reference(&pattern, &key), "{} vs {}", p, k);
        }
    }
}
