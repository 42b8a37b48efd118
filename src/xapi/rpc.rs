//! The JSON-RPC envelope XAPI speaks at `/jsonrpc`: request encoding and response decoding,
//! including both error shapes (v2 objects and v1 / escaped-exception arrays). Pure.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A XAPI failure: the error code and its parameters (`ErrorDescription` in XML-RPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// E.g. `SESSION_INVALID`, `HOST_IS_SLAVE`.
    pub code: String,
    /// The parameters, stringified.
    pub params: Vec<String>,
}

/// What decoding a response body can give.
#[derive(Debug)]
pub enum Decoded<T> {
    /// The call succeeded.
    Ok(T),
    /// XAPI answered with an API error.
    Failure(Failure),
}

/// Encodes a JSON-RPC 2.0 request.
pub fn encode_request(method: &str, params: &[Value], id: u64) -> Vec<u8> {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "method": method,
        "params": params,
        "id": id,
    });
    // Serialising a Value into a Vec cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<Value>,
}

fn none<T>() -> Option<T> {
    None
}

/// Decodes a response body. `Err` carries a short description of what was malformed.
pub fn decode_response<T: DeserializeOwned>(body: &[u8]) -> Result<Decoded<T>, String> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(e) => e,
        // yojson writes non-finite floats as bare NaN/Infinity, which is not JSON; retry with
        // those tokens replaced by null rather than failing a whole records read.
        Err(first) => match replace_non_finite(body) {
            Some(cleaned) => serde_json::from_slice(&cleaned)
                .map_err(|_| format!("JSON-RPC response is not valid JSON ({first})"))?,
            None => return Err(format!("JSON-RPC response is not valid JSON ({first})")),
        },
    };
    if let Some(error) = envelope.error.filter(|e| !e.is_null()) {
        return Ok(Decoded::Failure(failure_of(&error)));
    }
    match envelope.result {
        Some(result) => Ok(Decoded::Ok(result)),
        None => Err("JSON-RPC response has neither result nor error".into()),
    }
}

fn failure_of(error: &Value) -> Failure {
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    match error {
        // v2: {"code": 1, "message": CODE, "data": [params]}
        Value::Object(map) => Failure {
            code: map.get("message").map(text).unwrap_or_default(),
            params: match map.get("data") {
                Some(Value::Array(items)) => items.iter().map(text).collect(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![text(other)],
            },
        },
        // v1 and exceptions escaping dispatch: [CODE, params...]
        Value::Array(items) => Failure {
            code: items.first().map(text).unwrap_or_default(),
            params: items.iter().skip(1).map(text).collect(),
        },
        other => Failure {
            code: text(other),
            params: Vec::new(),
        },
    }
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` outside strings by `null`; `None` when
/// there were none.
fn replace_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &body[i..];
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(token) = token {
            out.extend_from_slice(b"null");
            i += token.len();
            changed = true;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_v2_success_and_error() {
        let ok: Decoded<String> =
            decode_response(br#"{"jsonrpc":"2.0","result":"OpaqueRef:1","id":1}"#).unwrap();
        assert!(matches!(ok, Decoded::Ok(ref s) if s == "OpaqueRef:1"));
        let err: Decoded<String> = decode_response(
            br#"{"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_INVALID","data":["OpaqueRef:1"]},"id":2}"#,
        )
        .unwrap();
        match err {
            Decoded::Failure(f) => {
                assert_eq!(f.code, "SESSION_INVALID");
                assert_eq!(f.params, ["OpaqueRef:1"]);
            }
            Decoded::Ok(_) => panic!("expected a failure"),
        }
    }

    #[test]
    fn decodes_v1_and_array_errors() {
        let err: Decoded<String> =
            decode_response(br#"{"result":null,"error":["HOST_IS_SLAVE","10.0.0.1"],"id":"x"}"#)
                .unwrap();
        assert!(
            matches!(err, Decoded::Failure(ref f) if f.code == "HOST_IS_SLAVE" && f.params == ["10.0.0.1"])
        );
        let void: Decoded<String> =
            decode_response(br#"{"result":"","error":null,"id":"x"}"#).unwrap();
        assert!(matches!(void, Decoded::Ok(ref s) if s.is_empty()));
    }

    #[test]
    fn tolerates_bare_nan_outside_strings() {
        let ok: Decoded<Value> =
            decode_response(br#"{"result":{"a":NaN,"b":"NaN","c":-Infinity},"id":1}"#).unwrap();
        match ok {
            Decoded::Ok(v) => {
                assert!(v["a"].is_null());
                assert_eq!(v["b"], "NaN");
                assert!(v["c"].is_null());
            }
            Decoded::Failure(_) => panic!(),
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_response::<Value>(b"<html>").is_err());
        assert!(decode_response::<Value>(br#"{"id":1}"#).is_err());
    }
}
