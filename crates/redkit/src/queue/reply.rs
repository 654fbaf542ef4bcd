//! Reading the arrays the queue's scripts return.

use crate::store::ScriptValue;

/// The integer at `index`, 0 when absent or not an integer.
pub(super) fn int_at(items: &[ScriptValue], index: usize) -> i64 {
    items.get(index).and_then(ScriptValue::as_i64).unwrap_or(0)
}

/// The text at `index` (lossy UTF-8), `None` when absent or nil.
pub(super) fn text_at(items: &[ScriptValue], index: usize) -> Option<String> {
    match items.get(index) {
        Some(ScriptValue::Bytes(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    }
}
