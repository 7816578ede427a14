//! The topic matcher against the obvious recursive one, on inputs small
//! enough for it: they must agree, and neither may blow the stack.
#![no_main]

use enoki::transport::topic::matches;
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|input: (&str, &str)| {
    let (pattern, key) = input;
    let got = matches(pattern, key);
    let (p, k): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), key.split('.').collect());
    if p.len() <= 12 && k.len() <= 12 {
        assert_eq!(got, reference(&p, &k), "{pattern:?} vs {key:?}");
    }
});
