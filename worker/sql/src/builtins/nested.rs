//! Flink's ARRAY, MAP and ROW functions: the constructors `ARRAY[…]`, `MAP[…]` and `ROW(…)`
//! (which [`crate::expr`] rewrites into calls of `array_value`, `map_value` and `row_value`),
//! element access (`a[i]`, `m[k]`, `r.f`, rewritten into `subscript`), and the functions
//! Flink 2.3 documents over arrays and maps, each with Flink's NULL handling.

use super::{count, int_arg, str_arg, udf};
use crate::nested::{Nested, array_of, common_of, map_of, row_of};
use crate::value::{Column, Row, SqlType, Value, ValueReader, arrow_schema, rows_to_batch};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion_common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use std::sync::Arc;

/// The description of a nested argument type.
fn nested(t: Option<SqlType>) -> Option<&'static Nested> {
    match t {
        Some(SqlType::Nested(n)) => Some(n.get()),
        _ => None,
    }
}

/// The element type of an ARRAY argument.
fn element(t: Option<SqlType>) -> Result<SqlType, String> {
    match nested(t) {
        Some(Nested::Array(e)) => Ok(*e),
        _ => Err(format!(
            "takes an ARRAY, not {}",
            t.map_or("NULL", SqlType::sql_name)
        )),
    }
}

/// The key and value types of a MAP argument.
fn map_parts(t: Option<SqlType>) -> Result<(SqlType, SqlType), String> {
    match nested(t) {
        Some(Nested::Map(k, v)) => Ok((*k, *v)),
        _ => Err(format!(
            "takes a MAP, not {}",
            t.map_or("NULL", SqlType::sql_name)
        )),
    }
}

/// `(array, x)`: the array and the element type for x.
fn array_and_element(
    a: &[Option<SqlType>],
    ret: Option<SqlType>,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(a, 2, 2)?;
    let e = element(a[0])?;
    let arr = a[0].expect("an ARRAY");
    Ok((vec![arr, e], ret.unwrap_or(arr)))
}

/// Arrays of one element type (`ARRAY_CONCAT`, `ARRAY_UNION`, …): their common type.
fn same_arrays(
    a: &[Option<SqlType>],
    min: usize,
    max: usize,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(a, min, max)?;
    for t in a {
        element(*t)?;
    }
    let t = common_of(a)?;
    Ok((vec![t; a.len()], t))
}

fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// `items` without repeats, in the order of their first occurrence (NULL counts once).
fn distinct(items: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Puts `k` into `entries`, replacing the value of an equal key (the later one wins, as in
/// Flink's MAP constructor and MAP_UNION).
fn put(entries: &mut Vec<(Value, Value)>, k: Value, v: Value) -> Result<(), String> {
    if matches!(k, Value::Null) {
        return Err("a MAP key is NULL (Weir's maps have no NULL keys)".into());
    }
    match entries.iter_mut().find(|(x, _)| *x == k) {
        Some(e) => e.1 = v,
        None => entries.push((k, v)),
    }
    Ok(())
}

/// The rows of `ARRAY_SLICE(array, from[, to])`: 1-based and inclusive, 0 the start,
/// negative counted from the end; empty where the range is.
fn slice(items: &[Value], from: i64, to: i64) -> Vec<Value> {
    let n = items.len() as i64;
    let at = |i: i64| match i {
        0 => 1,
        i if i < 0 => n + i + 1,
        i => i,
    };
    let (from, to) = (at(from).max(1), at(to).min(n));
    if from > to {
        return Vec::new();
    }
    items[(from - 1) as usize..to as usize].to_vec()
}

/// `STR_TO_MAP(s[, listDelimiter, keyValueDelimiter])`: the entries split at the list
/// delimiter (`,`), each at its first key-value delimiter (`=`); a text with none is a key
/// with a NULL value. The delimiters are Java regular expressions, as in Flink.
fn str_to_map(a: &[Value]) -> Result<Value, String> {
    let Some(s) = str_arg(&a[0]) else {
        return Ok(Value::Null);
    };
    let delim = |i: usize, default: &str| -> Result<Option<regex::Regex>, String> {
        match a.get(i) {
            None => Ok(Some(
                regex::Regex::new(&regex::escape(default)).expect("literal"),
            )),
            Some(Value::Str(d)) => regex::Regex::new(d)
                .map(Some)
                .map_err(|e| format!("delimiter '{d}' is no regular expression: {e}")),
            Some(_) => Ok(None),
        }
    };
    let (Some(list), Some(kv)) = (delim(1, ",")?, delim(2, "=")?) else {
        return Ok(Value::Null);
    };
    let mut entries = Vec::new();
    if s.is_empty() {
        return Ok(Value::Map(Arc::new(entries)));
    }
    for part in list.split(s) {
        let (k, v) = match kv.find(part) {
            Some(m) => (&part[..m.start()], Some(&part[m.end()..])),
            None => (part, None),
        };
        let v = v.map_or(Value::Null, |v| Value::Str(v.to_string()));
        put(&mut entries, Value::Str(k.to_string()), v)?;
    }
    Ok(Value::Map(Arc::new(entries)))
}

/// The ARRAY, MAP and ROW functions.
pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    let mut fns = vec![
        udf(
            "array_value",
            "ARRAY[x, …]",
            |a| {
                if a.is_empty() {
                    return Err("takes at least one element".into());
                }
                let t = common_of(a)?;
                Ok((vec![t; a.len()], array_of(t)))
            },
            |a| Ok(Value::Array(Arc::new(a.to_vec()))),
        ),
        udf(
            "map_value",
            "MAP[key, value, …]",
            |a| {
                if a.is_empty() || a.len() % 2 != 0 {
                    return Err("takes pairs of keys and values".into());
                }
                let keys: Vec<_> = a.iter().step_by(2).copied().collect();
                let values: Vec<_> = a.iter().skip(1).step_by(2).copied().collect();
                let (k, v) = (common_of(&keys)?, common_of(&values)?);
                let tys = (0..a.len())
                    .map(|i| if i % 2 == 0 { k } else { v })
                    .collect();
                Ok((tys, map_of(k, v)))
            },
            |a| {
                let mut entries = Vec::with_capacity(a.len() / 2);
                for kv in a.chunks(2) {
                    put(&mut entries, kv[0].clone(), kv[1].clone())?;
                }
                Ok(Value::Map(Arc::new(entries)))
            },
        ),
        udf(
            "row_value",
            "ROW(x, …)",
            |a| {
                if a.is_empty() {
                    return Err("takes at least one field".into());
                }
                let tys = a
                    .iter()
                    .map(|t| t.ok_or("takes no untyped NULL: cast it to a type"))
                    .collect::<Result<Vec<_>, _>>()?;
                // Flink names the fields of a ROW(…) as it names unnamed expressions.
                let fields = tys
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("EXPR${i}"), *t))
                    .collect();
                Ok((tys, row_of(fields)))
            },
            |a| Ok(Value::Row(Arc::new(a.to_vec()))),
        ),
        udf(
            "cardinality",
            "CARDINALITY(array or map)",
            |a| {
                count(a, 1, 1)?;
                match nested(a[0]) {
                    Some(Nested::Array(_) | Nested::Map(..)) => {}
                    _ => return Err("takes an ARRAY or a MAP".into()),
                }
                Ok((vec![a[0].expect("nested")], SqlType::Int))
            },
            |a| {
                Ok(match &a[0] {
                    Value::Array(x) => Value::Int(x.len() as i64),
                    Value::Map(x) => Value::Int(x.len() as i64),
                    _ => Value::Null,
                })
            },
        ),
        udf(
            "element",
            "ELEMENT(array)",
            |a| {
                count(a, 1, 1)?;
                Ok((vec![a[0].expect("checked")], element(a[0])?))
            },
            |a| match items(&a[0]) {
                Some(x) if x.len() > 1 => Err(format!(
                    "the ARRAY has {} elements; ELEMENT takes an ARRAY of at most one",
                    x.len()
                )),
                Some(x) => Ok(x.first().cloned().unwrap_or(Value::Null)),
                None => Ok(Value::Null),
            },
        ),
        udf(
            "array_contains",
            "ARRAY_CONTAINS(array, x)",
            |a| array_and_element(a, Some(SqlType::Boolean)),
            |a| Ok(items(&a[0]).map_or(Value::Null, |x| Value::Bool(x.contains(&a[1])))),
        ),
        udf(
            "array_position",
            "ARRAY_POSITION(array, x)",
            |a| array_and_element(a, Some(SqlType::Int)),
            |a| match (items(&a[0]), &a[1]) {
                (Some(x), needle) if !matches!(needle, Value::Null) => Ok(Value::Int(
                    x.iter()
                        .position(|v| v == needle)
                        .map_or(0, |i| i as i64 + 1),
                )),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "array_remove",
            "ARRAY_REMOVE(array, x)",
            |a| array_and_element(a, None),
            |a| {
                Ok(items(&a[0]).map_or(Value::Null, |x| {
                    Value::Array(Arc::new(
                        x.iter().filter(|v| **v != a[1]).cloned().collect(),
                    ))
                }))
            },
        ),
        udf(
            "array_append",
            "ARRAY_APPEND(array, x)",
            |a| array_and_element(a, None),
            |a| {
                Ok(items(&a[0]).map_or(Value::Null, |x| {
                    let mut x = x.to_vec();
                    x.push(a[1].clone());
                    Value::Array(Arc::new(x))
                }))
            },
        ),
        udf(
            "array_prepend",
            "ARRAY_PREPEND(array, x)",
            |a| array_and_element(a, None),
            |a| {
                Ok(items(&a[0]).map_or(Value::Null, |x| {
                    let mut out = vec![a[1].clone()];
                    out.extend_from_slice(x);
                    Value::Array(Arc::new(out))
                }))
            },
        ),
        udf(
            "array_distinct",
            "ARRAY_DISTINCT(array)",
            |a| same_arrays(a, 1, 1),
            |a| {
                Ok(items(&a[0]).map_or(Value::Null, |x| {
                    Value::Array(Arc::new(distinct(x.iter().cloned())))
                }))
            },
        ),
        udf(
            "array_reverse",
            "ARRAY_REVERSE(array)",
            |a| same_arrays(a, 1, 1),
            |a| {
                Ok(items(&a[0]).map_or(Value::Null, |x| {
                    Value::Array(Arc::new(x.iter().rev().cloned().collect()))
                }))
            },
        ),
        udf(
            "array_slice",
            "ARRAY_SLICE(array, start[, end])",
            |a| {
                count(a, 2, 3)?;
                element(a[0])?;
                let mut tys = vec![a[0].expect("an ARRAY")];
                tys.resize(a.len(), SqlType::Int);
                Ok((tys, a[0].expect("an ARRAY")))
            },
            |a| {
                let (Some(x), Some(from)) = (items(&a[0]), int_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                let to = match a.get(2) {
                    None => x.len() as i64,
                    Some(v) => match int_arg(v) {
                        Some(to) => to,
                        None => return Ok(Value::Null),
                    },
                };
                Ok(Value::Array(Arc::new(slice(x, from, to))))
            },
        ),
        udf(
            "array_concat",
            "ARRAY_CONCAT(array, …)",
            |a| same_arrays(a, 1, usize::MAX),
            |a| {
                let mut out = Vec::new();
                for v in a {
                    match items(v) {
                        Some(x) => out.extend_from_slice(x),
                        None => return Ok(Value::Null),
                    }
                }
                Ok(Value::Array(Arc::new(out)))
            },
        ),
        udf(
            "array_union",
            "ARRAY_UNION(array1, array2)",
            |a| same_arrays(a, 2, 2),
            |a| match (items(&a[0]), items(&a[1])) {
                (Some(x), Some(y)) => {
                    Ok(Value::Array(Arc::new(distinct(x.iter().chain(y).cloned()))))
                }
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "array_except",
            "ARRAY_EXCEPT(array1, array2)",
            |a| same_arrays(a, 2, 2),
            |a| match (items(&a[0]), items(&a[1])) {
                (Some(x), Some(y)) => Ok(Value::Array(Arc::new(distinct(
                    x.iter().filter(|v| !y.contains(v)).cloned(),
                )))),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "array_intersect",
            "ARRAY_INTERSECT(array1, array2)",
            |a| same_arrays(a, 2, 2),
            |a| match (items(&a[0]), items(&a[1])) {
                (Some(x), Some(y)) => Ok(Value::Array(Arc::new(distinct(
                    x.iter().filter(|v| y.contains(v)).cloned(),
                )))),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "array_max",
            "ARRAY_MAX(array)",
            |a| {
                count(a, 1, 1)?;
                Ok((vec![a[0].expect("checked")], element(a[0])?))
            },
            |a| {
                Ok(items(&a[0])
                    .and_then(|x| {
                        x.iter()
                            .filter(|v| !matches!(v, Value::Null))
                            .max()
                            .cloned()
                    })
                    .unwrap_or(Value::Null))
            },
        ),
        udf(
            "array_min",
            "ARRAY_MIN(array)",
            |a| {
                count(a, 1, 1)?;
                Ok((vec![a[0].expect("checked")], element(a[0])?))
            },
            |a| {
                Ok(items(&a[0])
                    .and_then(|x| {
                        x.iter()
                            .filter(|v| !matches!(v, Value::Null))
                            .min()
                            .cloned()
                    })
                    .unwrap_or(Value::Null))
            },
        ),
        udf(
            "array_sort",
            "ARRAY_SORT(array[, ascending[, nulls_first]])",
            |a| {
                count(a, 1, 3)?;
                element(a[0])?;
                let mut tys = vec![a[0].expect("an ARRAY")];
                tys.resize(a.len(), SqlType::Boolean);
                Ok((tys, a[0].expect("an ARRAY")))
            },
            |a| {
                let Some(x) = items(&a[0]) else {
                    return Ok(Value::Null);
                };
                let flag = |i: usize, default: bool| match a.get(i) {
                    None => Some(default),
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => None,
                };
                let Some(asc) = flag(1, true) else {
                    return Ok(Value::Null);
                };
                let Some(nulls_first) = flag(2, asc) else {
                    return Ok(Value::Null);
                };
                let (mut nulls, mut vals): (Vec<Value>, Vec<Value>) =
                    x.iter().cloned().partition(|v| matches!(v, Value::Null));
                vals.sort();
                if !asc {
                    vals.reverse();
                }
                Ok(Value::Array(if nulls_first {
                    nulls.extend(vals);
                    Arc::new(nulls)
                } else {
                    vals.extend(nulls);
                    Arc::new(vals)
                }))
            },
        ),
        udf(
            "array_join",
            "ARRAY_JOIN(array, delimiter[, null_replacement])",
            |a| {
                count(a, 2, 3)?;
                if element(a[0])? != SqlType::String {
                    return Err("takes an ARRAY<STRING>".into());
                }
                let mut tys = vec![a[0].expect("an ARRAY")];
                tys.resize(a.len(), SqlType::String);
                Ok((tys, SqlType::String))
            },
            |a| {
                let (Some(x), Some(delim)) = (items(&a[0]), str_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                let replacement = match a.get(2) {
                    None => None,
                    Some(Value::Str(r)) => Some(r.as_str()),
                    Some(_) => return Ok(Value::Null),
                };
                let parts: Vec<&str> = x
                    .iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.as_str()),
                        _ => replacement,
                    })
                    .collect();
                Ok(Value::Str(parts.join(delim)))
            },
        ),
        udf(
            "split",
            "SPLIT(string, delimiter)",
            |a| {
                count(a, 2, 2)?;
                Ok((vec![SqlType::String; 2], array_of(SqlType::String)))
            },
            |a| {
                let (Some(s), Some(d)) = (str_arg(&a[0]), str_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                let parts: Vec<Value> = if d.is_empty() {
                    s.chars().map(|c| Value::Str(c.to_string())).collect()
                } else {
                    s.split(d).map(|p| Value::Str(p.to_string())).collect()
                };
                Ok(Value::Array(Arc::new(parts)))
            },
        ),
        udf(
            "map_keys",
            "MAP_KEYS(map)",
            |a| {
                count(a, 1, 1)?;
                let (k, _) = map_parts(a[0])?;
                Ok((vec![a[0].expect("a MAP")], array_of(k)))
            },
            |a| match &a[0] {
                Value::Map(m) => Ok(Value::Array(Arc::new(
                    m.iter().map(|e| e.0.clone()).collect(),
                ))),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "map_values",
            "MAP_VALUES(map)",
            |a| {
                count(a, 1, 1)?;
                let (_, v) = map_parts(a[0])?;
                Ok((vec![a[0].expect("a MAP")], array_of(v)))
            },
            |a| match &a[0] {
                Value::Map(m) => Ok(Value::Array(Arc::new(
                    m.iter().map(|e| e.1.clone()).collect(),
                ))),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "map_entries",
            "MAP_ENTRIES(map)",
            |a| {
                count(a, 1, 1)?;
                let (k, v) = map_parts(a[0])?;
                let entry = row_of(vec![("key".into(), k), ("value".into(), v)]);
                Ok((vec![a[0].expect("a MAP")], array_of(entry)))
            },
            |a| match &a[0] {
                Value::Map(m) => Ok(Value::Array(Arc::new(
                    m.iter()
                        .map(|(k, v)| Value::Row(Arc::new(vec![k.clone(), v.clone()])))
                        .collect(),
                ))),
                _ => Ok(Value::Null),
            },
        ),
        udf(
            "map_from_arrays",
            "MAP_FROM_ARRAYS(keys, values)",
            |a| {
                count(a, 2, 2)?;
                let (k, v) = (element(a[0])?, element(a[1])?);
                Ok((
                    vec![a[0].expect("an ARRAY"), a[1].expect("an ARRAY")],
                    map_of(k, v),
                ))
            },
            |a| {
                let (Some(k), Some(v)) = (items(&a[0]), items(&a[1])) else {
                    return Ok(Value::Null);
                };
                if k.len() != v.len() {
                    return Err(format!(
                        "the arrays of keys and values differ in length ({} and {})",
                        k.len(),
                        v.len()
                    ));
                }
                let mut entries = Vec::with_capacity(k.len());
                for (k, v) in k.iter().zip(v) {
                    put(&mut entries, k.clone(), v.clone())?;
                }
                Ok(Value::Map(Arc::new(entries)))
            },
        ),
        udf(
            "map_union",
            "MAP_UNION(map, …)",
            |a| {
                count(a, 1, usize::MAX)?;
                for t in a {
                    map_parts(*t)?;
                }
                let t = common_of(a)?;
                Ok((vec![t; a.len()], t))
            },
            |a| {
                let mut entries = Vec::new();
                for m in a {
                    let Value::Map(m) = m else {
                        return Ok(Value::Null);
                    };
                    for (k, v) in m.iter() {
                        put(&mut entries, k.clone(), v.clone())?;
                    }
                }
                Ok(Value::Map(Arc::new(entries)))
            },
        ),
        udf(
            "str_to_map",
            "STR_TO_MAP(string[, list_delimiter, key_value_delimiter])",
            |a| {
                if a.len() != 1 && a.len() != 3 {
                    return Err(format!("takes 1 or 3 arguments, not {}", a.len()));
                }
                Ok((
                    vec![SqlType::String; a.len()],
                    map_of(SqlType::String, SqlType::String),
                ))
            },
            str_to_map,
        ),
    ];
    fns.push(Arc::new(ScalarUDF::new_from_impl(Subscript::default())));
    fns.push(cast_by_index());
    fns
}

/// `a[i]` (1-based; NULL past either end; index 0 fails, as in Flink), `m[k]`
/// (NULL for a missing key), `r.f` and `r['f']`: `subscript(x, index)`. Its result type
/// depends on a ROW field's name, a constant, so it is a function of its own rather than a
/// [`super::Builtin`], whose result type depends on argument types only.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Subscript {
    signature: Signature,
}

impl Default for Subscript {
    fn default() -> Self {
        Subscript {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The position of the ROW field that `index` names (by name, or 1-based by position).
fn field_index(fields: &[(String, SqlType)], index: Option<&ScalarValue>) -> Result<usize, String> {
    let names = || {
        fields
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match index {
        Some(
            ScalarValue::Utf8(Some(n))
            | ScalarValue::Utf8View(Some(n))
            | ScalarValue::LargeUtf8(Some(n)),
        ) => fields
            .iter()
            .position(|(f, _)| f.eq_ignore_ascii_case(n))
            .ok_or_else(|| format!("the ROW has no field '{n}' (its fields: {})", names())),
        Some(i) => match i.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(i))) if (1..=fields.len() as i64).contains(&i) => {
                Ok(i as usize - 1)
            }
            _ => Err(format!(
                "the ROW has no field {i} (its fields: {})",
                names()
            )),
        },
        None => Err("a ROW's field is named by a constant: r.f or r['f']".into()),
    }
}

impl Subscript {
    fn result(&self, arg: &DataType, index: Option<&ScalarValue>) -> DfResult<SqlType> {
        let Some(SqlType::Nested(n)) = SqlType::from_arrow(arg) else {
            return plan_err!("x[index]: takes an ARRAY, a MAP or a ROW, not {arg}");
        };
        Ok(match n.get() {
            Nested::Array(e) => *e,
            Nested::Map(_, v) => *v,
            Nested::Row(fields) => match field_index(fields, index) {
                Ok(i) => fields[i].1,
                Err(why) => return plan_err!("{why}"),
            },
        })
    }
}

impl ScalarUDFImpl for Subscript {
    fn name(&self) -> &str {
        "subscript"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> DfResult<FieldRef> {
        if args.arg_fields.len() != 2 {
            return plan_err!("x[index] takes one index");
        }
        let ty = self.result(args.arg_fields[0].data_type(), args.scalar_arguments[1])?;
        Ok(Arc::new(Field::new("subscript", ty.arrow(), true)))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [x, i] = arg_types else {
            return plan_err!("x[index] takes one index");
        };
        let index = match SqlType::from_arrow(x) {
            Some(SqlType::Nested(n)) => match n.get() {
                Nested::Array(_) if SqlType::from_arrow(i).is_some_and(SqlType::is_integer) => {
                    DataType::Int64
                }
                Nested::Array(_) if *i == DataType::Null => DataType::Int64,
                Nested::Array(_) => {
                    return plan_err!("array[index]: the index is an integer, not {i}");
                }
                Nested::Map(k, _) => k.arrow(),
                Nested::Row(_) => i.clone(),
            },
            _ => return plan_err!("x[index]: takes an ARRAY, a MAP or a ROW, not {x}"),
        };
        Ok(vec![x.clone(), index])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let x = args.args[0].to_array(n)?;
        let Some(SqlType::Nested(id)) = SqlType::from_arrow(x.data_type()) else {
            return exec_err!("x[index]: takes an ARRAY, a MAP or a ROW");
        };
        let ret = SqlType::from_arrow(args.return_field.data_type())
            .expect("the result type is a SQL type");
        if let Nested::Row(fields) = id.get() {
            let index = match &args.args[1] {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            };
            let i = field_index(fields, index).or_else(|why| exec_err!("{why}"))?;
            // The field's column, NULL where the ROW is.
            let reader = ValueReader::new(&x, SqlType::Nested(id))?;
            let out: Vec<Row> = (0..n)
                .map(|r| match reader.get(r) {
                    Value::Row(f) => Row(vec![f[i].clone()]),
                    _ => Row(vec![Value::Null]),
                })
                .collect();
            return column(ret, &out);
        }
        let idx_ty = SqlType::from_arrow(&args.args[1].data_type()).unwrap_or(SqlType::BigInt);
        let reader = ValueReader::new(&x, SqlType::Nested(id))?;
        let index = ValueReader::new(&args.args[1].to_array(n)?, idx_ty)?;
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let v = match (reader.get(r), index.get(r)) {
                (Value::Array(_), Value::Int(0)) => {
                    return exec_err!(
                        "array[0]: the index of an ARRAY's first element is 1 (as in Flink, 0 fails)"
                    );
                }
                // Past either end is NULL.
                (Value::Array(items), Value::Int(i)) => usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| items.get(i).cloned())
                    .unwrap_or(Value::Null),
                (Value::Map(entries), k) => entries
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map_or(Value::Null, |e| e.1.clone()),
                _ => Value::Null,
            };
            out.push(Row(vec![v]));
        }
        column(ret, &out)
    }
}

/// One column of `ty` from one-value rows.
fn column(ty: SqlType, rows: &[Row]) -> DfResult<ColumnarValue> {
    let col = [Column {
        name: "out".into(),
        ty,
    }];
    let batch = rows_to_batch(&col, &arrow_schema(&col), rows.iter())?;
    Ok(ColumnarValue::Array(batch.column(0).clone()))
}

/// `CAST(x AS ARRAY<…>)`, `MAP<…>` or `ROW<…>` (to `ty`): part by part, each with Flink's
/// CAST of its type (`CAST(ARRAY[TRUE] AS ARRAY<STRING>)` is `[TRUE]`), a ROW's fields by
/// position (their names are the target's).
pub(super) fn cast(ty: SqlType) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(NestedCast {
        to: Some(ty),
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// `cast_nested(x, type)`: `CAST(x AS ARRAY<…>)` as `crate::expr` writes it, the type by its
/// interned index ([`crate::nested::NestedId::index`]).
fn cast_by_index() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(NestedCast {
        to: None,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// A CAST to a nested type: to `to`, or (None) to the type its second argument names.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NestedCast {
    to: Option<SqlType>,
    signature: Signature,
}

/// Whether Flink casts a `from` to a `to`: nested types of the same kind whose parts cast
/// (a ROW with as many fields), and NULL to any.
fn castable(from: Option<SqlType>, to: SqlType) -> bool {
    let (Some(SqlType::Nested(f)), SqlType::Nested(t)) = (from, to) else {
        return from.is_none() || !matches!(to, SqlType::Nested(_));
    };
    let part = |a: SqlType, b: SqlType| {
        castable(Some(a), b)
            && (matches!(b, SqlType::Nested(_))
                || arrow::compute::can_cast_types(&a.arrow(), &b.arrow()))
    };
    match (f.get(), t.get()) {
        (Nested::Array(a), Nested::Array(b)) => part(*a, *b),
        (Nested::Map(k1, v1), Nested::Map(k2, v2)) => part(*k1, *k2) && part(*v1, *v2),
        (Nested::Row(f1), Nested::Row(f2)) => {
            f1.len() == f2.len() && f1.iter().zip(f2).all(|((_, a), (_, b))| part(*a, *b))
        }
        _ => false,
    }
}

impl ScalarUDFImpl for NestedCast {
    fn name(&self) -> &str {
        "cast_nested"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> DfResult<FieldRef> {
        let to = match (self.to, args.scalar_arguments.get(1).copied().flatten()) {
            (Some(t), _) => t,
            (None, Some(i)) => match i.cast_to(&DataType::UInt16) {
                Ok(ScalarValue::UInt16(Some(i))) => match crate::nested::NestedId::from_index(i) {
                    Some(id) => SqlType::Nested(id),
                    None => return plan_err!("cast_nested: no nested type {i}"),
                },
                _ => return plan_err!("cast_nested: {i} is no nested type's index"),
            },
            (None, _) => return plan_err!("cast_nested takes a value and a type index"),
        };
        let arg = args.arg_fields[0].data_type();
        let from = match arg {
            DataType::Null => None,
            t => SqlType::from_arrow(t),
        };
        if !castable(from, to) {
            return plan_err!(
                "a {} cannot be cast to {} (as in Flink)",
                from.map_or(arg.to_string(), |t| t.sql_name().to_string()),
                to.sql_name()
            );
        }
        Ok(Arc::new(Field::new("cast", to.arrow(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let x = args.args[0].to_array(args.number_rows)?;
        let to = SqlType::from_arrow(args.return_field.data_type()).expect("a nested type");
        Ok(ColumnarValue::Array(cast_array(&x, to)?))
    }
}

/// `array` cast to `to` as Flink's CAST does (see [`cast`]).
fn cast_array(array: &arrow::array::ArrayRef, to: SqlType) -> DfResult<arrow::array::ArrayRef> {
    use arrow::array::{Array, AsArray, ListArray, MapArray, StructArray};
    let from = array.data_type();
    if *from == DataType::Null {
        return Ok(arrow::array::new_null_array(&to.arrow(), array.len()));
    }
    let SqlType::Nested(t) = to else {
        // A part of a scalar type: Flink's CAST of it where Arrow's differs.
        let target = to.arrow();
        if from == &target {
            return Ok(array.clone());
        }
        return match super::cast_function(from, &target, false) {
            Some(f) => {
                let n = array.len();
                let out = f.invoke_with_args(ScalarFunctionArgs {
                    args: vec![ColumnarValue::Array(array.clone())],
                    arg_fields: vec![Arc::new(Field::new("x", from.clone(), true))],
                    number_rows: n,
                    return_field: Arc::new(Field::new("cast", target.clone(), true)),
                    config_options: Arc::default(),
                })?;
                let out = out.to_array(n)?;
                Ok(if out.data_type() == &target {
                    out
                } else {
                    arrow::compute::cast(&out, &target)?
                })
            }
            None => Ok(arrow::compute::cast(array, &target)?),
        };
    };
    let target = to.arrow();
    Ok(match (t.get(), &target) {
        (Nested::Array(e), DataType::List(field)) => {
            let l = array.as_list::<i32>();
            Arc::new(ListArray::try_new(
                field.clone(),
                l.offsets().clone(),
                cast_array(l.values(), *e)?,
                l.nulls().cloned(),
            )?)
        }
        (Nested::Map(k, v), DataType::Map(entries, _)) => {
            let m = array.as_map();
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("map entries are a Struct");
            };
            let parts = StructArray::try_new(
                kv.clone(),
                vec![cast_array(m.keys(), *k)?, cast_array(m.values(), *v)?],
                None,
            )?;
            Arc::new(MapArray::try_new(
                entries.clone(),
                m.offsets().clone(),
                parts,
                m.nulls().cloned(),
                false,
            )?)
        }
        (Nested::Row(fields), DataType::Struct(arrow_fields)) => {
            let s = array.as_struct();
            let columns = s
                .columns()
                .iter()
                .zip(fields)
                .map(|(c, (_, t))| cast_array(c, *t))
                .collect::<DfResult<Vec<_>>>()?;
            Arc::new(StructArray::try_new_with_length(
                arrow_fields.clone(),
                columns,
                s.nulls().cloned(),
                s.len(),
            )?)
        }
        _ => return exec_err!("cannot cast {from} to {}", to.sql_name()),
    })
}
