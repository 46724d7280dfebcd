//! What a job's own data must become before the database can keep it.
//!
//! A handler's result and error text are untrusted: whatever a worker
//! sends must be storable, or be replaced by a note that says why, never
//! stop the endings of other jobs. PostgreSQL refuses two things a Rust
//! string or valid JSON may hold, and readers refuse a third:
//!
//! - the character U+0000 in `text` (an error text, a progress note): it
//!   is replaced by U+FFFD (the replacement character, `�`);
//! - the escape `\u0000` inside a JSON string: it is replaced by
//!   `\ufffd`, the rest of the result kept byte for byte (numbers are not
//!   re-encoded, so none is rounded);
//! - a result nested deeper than [`MAX_DEPTH`] arrays and objects: the
//!   database would keep it, but no JSON reader with a recursion limit
//!   (serde_json's is 128) can read it back, so it is replaced by
//!   `{"unstorable_result": "…", "bytes": N}`.

use std::borrow::Cow;

/// The deepest nesting of arrays and objects a stored result may have.
pub(crate) const MAX_DEPTH: usize = 100;

/// What a JSON value is like, as far as the database and its readers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// How deeply it nests arrays and objects (a scalar: 0).
    pub(crate) depth: usize,
    /// A string or key somewhere in it holds U+0000.
    pub(crate) nul: bool,
}

/// The [`Shape`] of `v`, in one walk without recursion, so any depth is
/// measured safely.
pub(crate) fn shape(v: &serde_json::Value) -> Shape {
    let mut found = Shape {
        depth: 0,
        nul: false,
    };
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::String(s) => found.nul |= s.contains('\0'),
            serde_json::Value::Array(items) => {
                found.depth = found.depth.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            serde_json::Value::Object(map) => {
                found.depth = found.depth.max(d + 1);
                found.nul |= map.keys().any(|k| k.contains('\0'));
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    found
}

/// `s` with every U+0000 replaced by U+FFFD.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The JSON text `json` (valid JSON) as the database can keep it and
/// readers can read it back (see the module docs).
pub(crate) fn json(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    // Where each `\u0000` escape starts.
    let mut nuls = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                        nuls.push(i);
                        i += 6;
                        continue;
                    }
                    // Any other escape is two bytes or `\uXXXX`, whose
                    // digits cannot be a quote or a backslash.
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    if deepest > MAX_DEPTH {
        return Cow::Owned(
            serde_json::json!({
                "unstorable_result": format!(
                    "the result was nested {deepest} levels deep; at most {MAX_DEPTH} are kept"
                ),
                "bytes": json.len(),
            })
            .to_string(),
        );
    }
    if nuls.is_empty() {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut from = 0;
    for at in nuls {
        out.push_str(&json[from..at]);
        out.push_str("\\ufffd");
        from = at + 6;
    }
    out.push_str(&json[from..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_without_recursion() {
        assert_eq!(shape(&serde_json::json!(1)).depth, 0);
        assert_eq!(shape(&serde_json::json!({"a": [1, {"b": []}]})).depth, 4);
        let mut v = serde_json::json!(0);
        for _ in 0..100_000 {
            v = serde_json::Value::Array(vec![v]);
        }
        assert_eq!(shape(&v).depth, 100_000);
        // Dropping so deep a value recurses in serde_json: take it apart
        // by hand.
        while let serde_json::Value::Array(mut items) = v {
            v = items.pop().unwrap_or(serde_json::Value::Null);
        }
    }

    #[test]
    fn a_nul_is_found_in_strings_and_keys_only() {
        assert!(shape(&serde_json::json!({"a": ["x\u{0}"]})).nul);
        assert!(shape(&serde_json::json!({"k\u{0}": 1})).nul);
        assert!(!shape(&serde_json::json!({"a": "\\u0000"})).nul);
    }

    #[test]
    fn nul_characters_in_text_become_replacement_characters() {
        assert_eq!(text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn nul_escapes_in_json_strings_become_replacement_escapes_and_the_rest_is_kept() {
        let big = "123456789012345678901234567890";
        let raw = format!(r#"{{"s":"a\u0000b","k\u0000":[{big}],"t":"\\u0000"}}"#);
        let out = json(&raw);
        assert_eq!(
            out,
            format!(r#"{{"s":"a\ufffdb","k\ufffd":[{big}],"t":"\\u0000"}}"#),
            "an escaped backslash followed by u0000 is no NUL, and numbers are not re-encoded"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"], "a\u{FFFD}b");
        assert!(matches!(json(r#"{"a":[1,"x"]}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn a_result_nested_too_deep_is_replaced_by_a_note_that_says_so() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let out = json(&deep);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["unstorable_result"]
            .as_str()
            .unwrap()
            .contains("nested 200 levels deep"));
        assert_eq!(v["bytes"], 401);
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(json(&ok), ok);
        // Brackets inside strings are not nesting.
        let s = format!("[\"{}\"]", "[".repeat(500));
        assert_eq!(json(&s), s);
    }
}
