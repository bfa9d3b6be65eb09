//! The filter expression: its JSON syntax, parsing with errors that point into the expression, and
//! the reference evaluation over one metadata object (the oracle of the column evaluation).

use std::ops::Bound;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A scalar metadata value a filter compares with. JSON numbers compare as `f64` (so `1` equals
/// `1.0`; integers beyond 2^53 compare after rounding to `f64`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// JSON `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string (compared byte for byte).
    String(String),
}

impl Scalar {
    fn from_json(v: &Value) -> Option<Scalar> {
        Some(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(n.as_f64()?),
            Value::String(s) => Scalar::String(s.clone()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

/// A filter over documents' metadata (the JSON object stored with each document).
///
/// Written as JSON, in the operator style of MongoDB (as Chroma and LanceDB users know it):
///
/// | form | matches documents whose metadata … |
/// |---|---|
/// | `{"lang": "en"}` | has `lang` equal to `"en"` (shorthand of `{"lang": {"$eq": "en"}}`) |
/// | `{"year": {"$gte": 2000, "$lt": 2010}}` | has a number `year` in `[2000, 2010)` (`$gt`, `$gte`, `$lt`, `$lte`) |
/// | `{"tag": {"$in": ["a", "b"]}}` | has `tag` equal to one of the values |
/// | `{"tag": {"$nin": ["a", "b"]}}` | does not have `tag` equal to any of them (a missing `tag` matches) |
/// | `{"lang": {"$ne": "en"}}` | does not have `lang` equal to `"en"` (a missing `lang` matches) |
/// | `{"title": {"$exists": true}}` | has `title` (any value, `null` included); `false`: has not |
/// | `{"$and": [F, …]}`, `{"$or": [F, …]}`, `{"$not": F}` | all / any / not of the filters |
/// | `{}` | every document |
///
/// Several keys (or operators) in one object must all match. A key with dots looks into nested
/// objects (`"source.site"` is `site` inside the object `source`). When the value found is an
/// array, a comparison matches if any of its scalar elements matches (`{"tag": "a"}` matches
/// `"tag": ["a", "b"]`); the bounds given together on one key (`{"x": {"$gt": 2, "$lt": 4}}`)
/// form one range that a single element must fall in (MongoDB's `$elemMatch`, not its default,
/// which lets different elements satisfy different bounds), while other operators on the same key
/// are checked separately. Values compare by type: numbers with numbers (as `f64`), strings with
/// strings, booleans with booleans, `null` with `null`; a range matches numbers only.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every document.
    All,
    /// The value at `key` equals `value` (or, for an array, one of its elements does).
    Eq {
        /// Dotted key path.
        key: String,
        /// The value.
        value: Scalar,
    },
    /// The value at `key` equals one of `values`.
    In {
        /// Dotted key path.
        key: String,
        /// The values.
        values: Vec<Scalar>,
    },
    /// The number at `key` lies within the bounds.
    Range {
        /// Dotted key path.
        key: String,
        /// Lower bound.
        lower: Bound<f64>,
        /// Upper bound.
        upper: Bound<f64>,
    },
    /// `key` is present.
    Exists {
        /// Dotted key path.
        key: String,
    },
    /// Every filter matches.
    And(Vec<Filter>),
    /// At least one filter matches.
    Or(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
}

/// An error in a filter expression at `at` (a path into the expression, `$` for its root).
fn invalid(at: &str, detail: impl std::fmt::Display) -> Error {
    Error::InvalidQuery(format!("filter at {at}: {detail}"))
}

/// A JSON value as a short description for messages.
fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

impl Filter {
    /// Parses a filter from JSON text.
    ///
    /// ```
    /// use vellum::filter::Filter;
    /// let f = Filter::parse(r#"{"lang": "en", "year": {"$gte": 2000}}"#).unwrap();
    /// assert!(f.matches_json(&serde_json::json!({"lang": "en", "year": 2004})));
    /// assert!(!f.matches_json(&serde_json::json!({"lang": "en"})));
    /// assert!(Filter::parse(r#"{"year": {"$gte": "2000"}}"#).is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Filter> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| invalid("$", format!("not valid JSON ({e})")))?;
        Filter::from_json(&v)
    }

    /// Builds a filter from a parsed JSON value (an object, see [`Filter`]).
    pub fn from_json(v: &Value) -> Result<Filter> {
        parse_object(v, "$")
    }

    /// Whether the metadata object `metadata` matches (the reference evaluation; searches use
    /// per-segment columns, `crate::filter::matching_rows`).
    pub fn matches_json(&self, metadata: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::Eq { key, value } => any_scalar(lookup(metadata, key), |s| scalar_eq(s, value)),
            Filter::In { key, values } => any_scalar(lookup(metadata, key), |s| {
                values.iter().any(|v| scalar_eq(s, v))
            }),
            Filter::Range { key, lower, upper } => any_scalar(lookup(metadata, key), |s| match s {
                Scalar::Number(x) => in_bounds(*x, lower, upper),
                _ => false,
            }),
            Filter::Exists { key } => lookup(metadata, key).is_some(),
            Filter::And(fs) => fs.iter().all(|f| f.matches_json(metadata)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches_json(metadata)),
            Filter::Not(f) => !f.matches_json(metadata),
        }
    }

    /// The key paths the filter reads.
    pub fn keys(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_keys(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_keys<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::All => {}
            Filter::Eq { key, .. }
            | Filter::In { key, .. }
            | Filter::Range { key, .. }
            | Filter::Exists { key } => out.push(key),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.collect_keys(out)),
            Filter::Not(f) => f.collect_keys(out),
        }
    }
}

/// `x` within the bounds.
pub(super) fn in_bounds(x: f64, lower: &Bound<f64>, upper: &Bound<f64>) -> bool {
    let above = match lower {
        Bound::Included(l) => x >= *l,
        Bound::Excluded(l) => x > *l,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => x <= *u,
        Bound::Excluded(u) => x < *u,
        Bound::Unbounded => true,
    };
    above && below
}

fn scalar_eq(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Number(x), Scalar::Number(y)) => x == y,
        _ => a == b,
    }
}

/// The value at dotted `key` in `v`, descending through objects.
pub(super) fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(v, |node, part| node.as_object()?.get(part))
}

/// Whether `v` (a scalar, or an array's scalar elements) satisfies `pred`.
fn any_scalar(v: Option<&Value>, pred: impl Fn(&Scalar) -> bool) -> bool {
    match v {
        None | Some(Value::Object(_)) => false,
        Some(Value::Array(items)) => items.iter().filter_map(Scalar::from_json).any(|s| pred(&s)),
        Some(other) => Scalar::from_json(other).is_some_and(|s| pred(&s)),
    }
}

fn parse_object(v: &Value, at: &str) -> Result<Filter> {
    let Value::Object(map) = v else {
        return Err(invalid(
            at,
            format!(
                "expected an object such as {{\"key\": value}}, found {}",
                describe(v)
            ),
        ));
    };
    let mut all = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{at}.{key}");
        all.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(invalid(
                        &here,
                        format!("expected an array of filters, found {}", describe(value)),
                    ));
                };
                let fs = items
                    .iter()
                    .enumerate()
                    .map(|(i, f)| parse_object(f, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                if key == "$and" {
                    Filter::And(fs)
                } else {
                    Filter::Or(fs)
                }
            }
            "$not" => Filter::Not(Box::new(parse_object(value, &here)?)),
            op if op.starts_with('$') => {
                return Err(invalid(
                    &here,
                    format!("unknown operator {op:?} (at the top of a filter: $and, $or, $not; after a key: $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists)"),
                ))
            }
            "" => return Err(invalid(&here, "empty key")),
            _ if key.split('.').any(str::is_empty) => {
                return Err(invalid(&here, format!("key {key:?} has an empty part between dots")))
            }
            _ => parse_condition(key, value, &here)?,
        });
    }
    Ok(match all.len() {
        0 => Filter::All,
        1 => all.pop().expect("one"),
        _ => Filter::And(all),
    })
}

fn scalar(v: &Value, at: &str) -> Result<Scalar> {
    Scalar::from_json(v).ok_or_else(|| {
        invalid(
            at,
            format!(
                "expected a string, number, boolean or null, found {} (use $in for a list of values)",
                describe(v)
            ),
        )
    })
}

fn scalars(v: &Value, at: &str) -> Result<Vec<Scalar>> {
    let Value::Array(items) = v else {
        return Err(invalid(
            at,
            format!("expected an array of values, found {}", describe(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            Scalar::from_json(x).ok_or_else(|| {
                invalid(
                    &format!("{at}[{i}]"),
                    format!(
                        "expected a string, number, boolean or null, found {}",
                        describe(x)
                    ),
                )
            })
        })
        .collect()
}

fn number(v: &Value, at: &str) -> Result<f64> {
    v.as_f64().ok_or_else(|| {
        invalid(
            at,
            format!(
                "expected a number (ranges compare numbers), found {}",
                describe(v)
            ),
        )
    })
}

/// The conditions on one key: a value (equality) or an object of operators.
fn parse_condition(key: &str, v: &Value, at: &str) -> Result<Filter> {
    let Value::Object(ops) = v else {
        return Ok(Filter::Eq {
            key: key.to_string(),
            value: scalar(v, at)?,
        });
    };
    if ops.is_empty() {
        return Err(invalid(
            at,
            "an empty condition; give a value or operators such as {\"$gte\": 1}",
        ));
    }
    let k = || key.to_string();
    let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
    let mut ranged = false;
    let mut all = Vec::new();
    for (op, arg) in ops.iter() {
        let here = format!("{at}.{op}");
        match op.as_str() {
            "$eq" => all.push(Filter::Eq {
                key: k(),
                value: scalar(arg, &here)?,
            }),
            "$ne" => all.push(Filter::Not(Box::new(Filter::Eq {
                key: k(),
                value: scalar(arg, &here)?,
            }))),
            "$in" => all.push(Filter::In {
                key: k(),
                values: scalars(arg, &here)?,
            }),
            "$nin" => all.push(Filter::Not(Box::new(Filter::In {
                key: k(),
                values: scalars(arg, &here)?,
            }))),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let x = number(arg, &here)?;
                let b = if op.ends_with('e') {
                    Bound::Included(x)
                } else {
                    Bound::Excluded(x)
                };
                let slot = if op.starts_with("$g") {
                    &mut lower
                } else {
                    &mut upper
                };
                if *slot != Bound::Unbounded {
                    return Err(invalid(
                        &here,
                        "a second bound on the same side (give one of $gt / $gte and one of $lt / $lte)",
                    ));
                }
                *slot = b;
                ranged = true;
            }
            "$exists" => {
                let Value::Bool(b) = arg else {
                    return Err(invalid(
                        &here,
                        format!("expected true or false, found {}", describe(arg)),
                    ));
                };
                let e = Filter::Exists { key: k() };
                all.push(if *b { e } else { Filter::Not(Box::new(e)) });
            }
            other => {
                return Err(invalid(
                    &here,
                    format!("unknown operator {other:?} (after a key: $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists; a nested key is written with dots, \"a.b\")"),
                ))
            }
        }
    }
    if ranged {
        all.push(Filter::Range {
            key: k(),
            lower,
            upper,
        });
    }
    Ok(if all.len() == 1 {
        all.pop().expect("one")
    } else {
        Filter::And(all)
    })
}

/// Parses metadata text as stored (a JSON object; empty text is an empty object).
pub(super) fn parse_metadata(text: &str) -> std::result::Result<Value, serde_json::Error> {
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_forms() {
        let f = Filter::parse(r#"{"lang": "en"}"#).unwrap();
        assert_eq!(
            f,
            Filter::Eq {
                key: "lang".into(),
                value: Scalar::String("en".into())
            }
        );
        let f = Filter::parse(r#"{"year": {"$gte": 2000, "$lt": 2010}}"#).unwrap();
        assert_eq!(
            f,
            Filter::Range {
                key: "year".into(),
                lower: Bound::Included(2000.0),
                upper: Bound::Excluded(2010.0)
            }
        );
        assert_eq!(Filter::parse("{}").unwrap(), Filter::All);
        let f =
            Filter::parse(r#"{"$or": [{"a": 1}, {"$not": {"b": {"$exists": true}}}]}"#).unwrap();
        assert!(f.matches_json(&json!({"a": 1.0})));
        assert!(f.matches_json(&json!({})));
        assert!(!f.matches_json(&json!({"a": 2, "b": null})));
        assert_eq!(f.keys(), vec!["a", "b"]);
    }

    #[test]
    fn semantics_of_arrays_nesting_ne_and_types() {
        let doc =
            json!({"tag": ["a", "b", 3], "src": {"site": "x", "n": 2}, "flag": true, "z": null});
        let m = |s: &str| Filter::parse(s).unwrap().matches_json(&doc);
        assert!(m(r#"{"tag": "b"}"#));
        assert!(m(r#"{"tag": {"$gt": 2}}"#));
        assert!(!m(r#"{"tag": {"$gt": 3}}"#));
        assert!(m(r#"{"src.site": "x", "src.n": {"$lte": 2}}"#));
        assert!(!m(r#"{"src": "x"}"#));
        assert!(m(r#"{"src": {"$exists": true}}"#));
        assert!(m(r#"{"flag": true}"#));
        assert!(!m(r#"{"flag": 1}"#));
        assert!(m(r#"{"z": null}"#));
        assert!(m(r#"{"z": {"$exists": true}}"#));
        assert!(m(r#"{"missing": {"$ne": "q"}}"#));
        assert!(m(r#"{"missing": {"$nin": ["q"]}}"#));
        assert!(!m(r#"{"missing": {"$in": ["q"]}}"#));
        assert!(!m(r#"{"src.site": {"$gte": 0}}"#));
    }

    #[test]
    fn errors_point_into_the_expression() {
        let err = |s: &str| Filter::parse(s).unwrap_err().to_string();
        assert!(err("[1]").contains("filter at $: expected an object"));
        assert!(err(r#"{"$and": {"a": 1}}"#).contains("filter at $.$and: expected an array"));
        assert!(err(r#"{"$and": [{"a": 1}, 3]}"#).contains("filter at $.$and[1]"));
        assert!(err(r#"{"y": {"$gte": "2000"}}"#).contains("filter at $.y.$gte: expected a number"));
        assert!(err(r#"{"y": {"$between": 1}}"#).contains("unknown operator \"$between\""));
        assert!(err(r#"{"$nor": []}"#).contains("unknown operator \"$nor\""));
        assert!(err(r#"{"y": [1, 2]}"#).contains("use $in"));
        assert!(err(r#"{"y": {"$gt": 1, "$gte": 2}}"#).contains("second bound"));
        assert!(err(r#"{"y": {"$exists": 1}}"#).contains("expected true or false"));
        assert!(err(r#"{"a..b": 1}"#).contains("empty part"));
        assert!(err(r#"{"y": {}}"#).contains("empty condition"));
        assert!(err("{").contains("not valid JSON"));
    }
}
