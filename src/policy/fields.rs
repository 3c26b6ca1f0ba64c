//! Reading the few top-level fields the policy decides on, with a 400 that names the field and
//! what was expected when a value has the wrong type.

use serde_json::Value;

use crate::error::GatewayError;
use crate::request_body::RequestBody;

/// A top-level field as a JSON tree (small fields only: never `messages`). `null` reads as
/// absent: OpenRouter's optional fields are all nullable.
pub(crate) fn read(req: &RequestBody<'_>, key: &str) -> Result<Option<Value>, GatewayError> {
    parse(key, req.get(key))
}

/// [`read`] of a value already looked up: `raw` is the field `key`'s raw JSON, if present.
pub(crate) fn parse(key: &str, raw: Option<&str>) -> Result<Option<Value>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    // Valid JSON can still fail here (a number out of range, nesting too deep): the client's
    // doing, so a 400 that names the field.
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        let reason = e.to_string();
        let reason = reason.split(" at line ").next().unwrap_or(&reason);
        GatewayError::BadRequest(format!("`{key}` cannot be read: {reason}"))
    })?;
    Ok((!value.is_null()).then_some(value))
}

/// `"a string"`, `"an array"`, ...: how error messages name what they found.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The 400 for a field of the wrong type: "`provider.only` must be an array of strings, found a string".
pub(crate) fn wrong_type(path: &str, expected: &str, found: &Value) -> GatewayError {
    GatewayError::BadRequest(format!(
        "`{path}` must be {expected}, found {}",
        describe(found)
    ))
}

/// A string, or absent.
pub(crate) fn string(value: Option<&Value>, path: &str) -> Result<Option<String>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(path, "a string", other)),
    }
}

/// Refuses a model id with whitespace or control characters: `"x/y:free "` would slip past a
/// `*:free` rule while the upstream reads the space away.
pub(crate) fn model_id(id: &str, path: &str) -> Result<(), GatewayError> {
    match id.chars().find(|c| c.is_whitespace() || c.is_control()) {
        None => Ok(()),
        Some(c) => Err(GatewayError::BadRequest(format!(
            "`{path}` must be a model id without whitespace or control characters, found {} in {}",
            c.escape_unicode(),
            render(&Value::String(id.to_owned()))
        ))),
    }
}

/// An array of strings, or absent.
pub(crate) fn strings(
    value: Option<&Value>,
    path: &str,
) -> Result<Option<Vec<String>>, GatewayError> {
    strings_at(value, || path.to_owned(), str::to_owned)
}

/// [`strings`], each string made into a `T` by `make`, with the path for the error message
/// built only if there is an error.
pub(crate) fn strings_at<T>(
    value: Option<&Value>,
    path: impl Fn() -> String,
    make: impl Fn(&str) -> T,
) -> Result<Option<Vec<T>>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(make(s)),
                other => Err(wrong_type(&format!("{}[{i}]", path()), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong_type(&path(), "an array of strings", other)),
    }
}

/// An array (of anything), or absent.
pub(crate) fn array<'v>(value: Option<&'v Value>, path: &str) -> Result<&'v [Value], GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(path, "an array", other)),
    }
}

/// A token count: a non-negative integer, or absent.
pub(crate) fn token_count(value: Option<&Value>, path: &str) -> Result<Option<u64>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "`{path}` must be a non-negative integer, found {n}"
            ))
        }),
        Some(other) => Err(wrong_type(path, "a non-negative integer", other)),
    }
}

/// A number written the way people write it: `5`, not `5.0`.
pub(crate) fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        // Exact: an integral f64 below 2^53 converts to i64 without loss.
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// A compact JSON rendering for explanation lines.
pub(crate) fn render(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
