//! Redis glob patterns (`SCAN MATCH`), matched the way the server does.
//!
//! Keys are data: a key or prefix containing `*`, `?`, `[`, `]` or `\` must
//! never widen a pattern, so literal parts go through [`escape_glob`].

/// Escapes glob metacharacters so that `s` matches only itself.
pub fn escape_glob(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whether `text` matches `pattern` with Redis' rules: `*`, `?`, `[abc]`,
/// `[^a]`, `[a-z]` and `\` escapes.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches_from(&pattern, &text)
}

fn matches_from(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_matches(pattern, p, text[t])
                        && matched
                    {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((after_star, matched_until)) => {
                p = after_star;
                t = matched_until + 1;
                star = Some((after_star, matched_until + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`.
/// Returns whether it matched and the index after the class.
fn class_matches(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != ']' {
        if pattern[i] == '\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == '-' && pattern[i + 2] != ']' {
            let (low, high) = if pattern[i] <= pattern[i + 2] {
                (pattern[i], pattern[i + 2])
            } else {
                (pattern[i + 2], pattern[i])
            };
            matched |= low <= c && c <= high;
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    // Redis treats an unterminated class as ending at the pattern's end.
    let next = if i < pattern.len() { i + 1 } else { i };
    Some((matched != negate, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_classes_and_escapes_match_like_redis() {
        assert!(glob_matches("user:*", "user:1"));
        assert!(glob_matches("user:*", "user:"));
        assert!(!glob_matches("user:*", "users:1"));
        assert!(glob_matches("h?llo", "hello"));
        assert!(!glob_matches("h?llo", "hllo"));
        assert!(glob_matches("h[ae]llo", "hallo"));
        assert!(!glob_matches("h[ae]llo", "hillo"));
        assert!(glob_matches("h[^e]llo", "hallo"));
        assert!(!glob_matches("h[^e]llo", "hello"));
        assert!(glob_matches("h[a-c]llo", "hbllo"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("\\*", "*"));
        assert!(!glob_matches("\\*", "x"));
    }

    #[test]
    fn escaped_text_matches_only_itself() {
        for hostile in ["a*", "a?", "[ab]", "x\\", "^-]", "k:*:[0-9]?\\"] {
            let pattern = escape_glob(hostile);
            assert!(glob_matches(&pattern, hostile), "{hostile}");
            assert!(!glob_matches(&pattern, "a"), "{hostile}");
            assert!(!glob_matches(&pattern, "ab"), "{hostile}");
            let prefix = format!("{}*", escape_glob(hostile));
            assert!(glob_matches(&prefix, &format!("{hostile}tail")));
            assert!(!glob_matches(&prefix, "other"));
        }
    }
}
