//! The nested SQL types, ARRAY, MAP and ROW: their descriptions, interned so that
//! [`SqlType`] stays a small `Copy` value (a nested type is [`SqlType::Nested`] with the index
//! of its description here), their names as Flink writes them, and their Arrow types.
//!
//! Descriptions are interned once per process and never removed (a script declares few).
//! An index means nothing outside the process: a [`NestedId`] is serialized as its
//! description and interned again where it is read.

use crate::value::SqlType;
use arrow::datatypes::{DataType, Field, Fields};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::{Arc, Mutex};

/// What a nested type is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Nested {
    /// ARRAY<element>
    Array(SqlType),
    /// MAP<key, value>
    Map(SqlType, SqlType),
    /// ROW<name type, …>: the fields in order.
    Row(Vec<(String, SqlType)>),
}

/// The index of an interned [`Nested`] description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NestedId(u16);

/// The interned descriptions with their Flink names, by index; leaked so that lookups hand
/// out `'static` references without holding the lock.
static TYPES: Mutex<Vec<&'static (Nested, String)>> = Mutex::new(Vec::new());

impl NestedId {
    /// The id of `n`, interning it on first use.
    pub fn of(n: Nested) -> NestedId {
        let found = |types: &[&'static (Nested, String)]| {
            types
                .iter()
                .position(|(t, _)| *t == n)
                .map(|i| NestedId(i as u16))
        };
        if let Some(id) = found(&TYPES.lock().unwrap_or_else(|e| e.into_inner())) {
            return id;
        }
        // Named outside the lock: the parts' names are looked up here too.
        let name = name_of(&n);
        let mut types = TYPES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = found(&types) {
            return id;
        }
        types.push(Box::leak(Box::new((n, name))));
        NestedId(u16::try_from(types.len() - 1).expect("fewer than 65536 nested types"))
    }

    /// The index, which [`NestedId::from_index`] turns back into the id in this process
    /// (a constant argument of `cast_nested`, see `crate::expr`).
    pub(crate) fn index(self) -> u16 {
        self.0
    }

    /// The id of index `i`, if a type has it.
    pub(crate) fn from_index(i: u16) -> Option<NestedId> {
        let n = TYPES.lock().unwrap_or_else(|e| e.into_inner()).len();
        (usize::from(i) < n).then_some(NestedId(i))
    }

    /// The description.
    pub fn get(self) -> &'static Nested {
        &Self::entry(self).0
    }

    /// The name as Flink writes it: `ARRAY<INT>`, `MAP<STRING, INT>`, ``ROW<`a` INT>``.
    pub fn name(self) -> &'static str {
        &Self::entry(self).1
    }

    fn entry(self) -> &'static (Nested, String) {
        TYPES.lock().unwrap_or_else(|e| e.into_inner())[usize::from(self.0)]
    }
}

fn name_of(n: &Nested) -> String {
    match n {
        Nested::Array(e) => format!("ARRAY<{}>", e.sql_name()),
        Nested::Map(k, v) => format!("MAP<{}, {}>", k.sql_name(), v.sql_name()),
        Nested::Row(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(n, t)| format!("`{n}` {}", t.sql_name()))
                .collect();
            format!("ROW<{}>", fields.join(", "))
        }
    }
}

impl Serialize for NestedId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for NestedId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(NestedId::of(Nested::deserialize(d)?))
    }
}

/// ARRAY<element>.
pub fn array_of(element: SqlType) -> SqlType {
    SqlType::Nested(NestedId::of(Nested::Array(element)))
}

/// MAP<key, value>.
pub fn map_of(key: SqlType, value: SqlType) -> SqlType {
    SqlType::Nested(NestedId::of(Nested::Map(key, value)))
}

/// ROW<fields>.
pub fn row_of(fields: Vec<(String, SqlType)>) -> SqlType {
    SqlType::Nested(NestedId::of(Nested::Row(fields)))
}

/// The Arrow type a nested type's values are evaluated as: a `List` of the elements, a
/// `Map` of non-null keys, a `Struct` of the fields.
pub(crate) fn arrow(n: &Nested) -> DataType {
    match n {
        Nested::Array(e) => DataType::new_list(e.arrow(), true),
        Nested::Map(k, v) => DataType::Map(Arc::new(map_entries(*k, *v)), false),
        Nested::Row(fields) => DataType::Struct(row_fields(fields)),
    }
}

/// The entries field of a MAP's Arrow type.
pub(crate) fn map_entries(k: SqlType, v: SqlType) -> Field {
    Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", k.arrow(), false),
            Field::new("value", v.arrow(), true),
        ])),
        false,
    )
}

pub(crate) fn row_fields(fields: &[(String, SqlType)]) -> Fields {
    fields
        .iter()
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect()
}

/// The nested type of an Arrow type, if its parts are SQL types.
pub(crate) fn from_arrow(t: &DataType) -> Option<SqlType> {
    Some(match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            array_of(SqlType::from_arrow(f.data_type())?)
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => map_of(
                SqlType::from_arrow(kv[0].data_type())?,
                SqlType::from_arrow(kv[1].data_type())?,
            ),
            _ => return None,
        },
        DataType::Struct(fields) => row_of(
            fields
                .iter()
                .map(|f| Some((f.name().clone(), SqlType::from_arrow(f.data_type())?)))
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}

/// The type values of `a` and `b` take together, as Flink's planner finds it for the
/// elements of `ARRAY[…]`, the keys and values of `MAP[…]`, and the results of a CASE: the
/// same type, the wider integer, an exact DECIMAL holding both, DOUBLE for floating point
/// among numbers, STRING for strings; None where they have none.
pub(crate) fn common_type(a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType as T;
    if a == b {
        return Some(a);
    }
    if a.is_integer() && b.is_integer() {
        let bits = |t: SqlType| t.int_range().map_or(64, |(_, hi)| 64 - hi.leading_zeros());
        return Some(if bits(a) >= bits(b) { a } else { b });
    }
    if let (Some((p1, s1)), Some((p2, s2))) = (a.decimal(), b.decimal()) {
        let s = s1.max(s2);
        let digits = (p1 - s1).max(p2 - s2);
        let p = (digits + s).min(crate::decimal::MAX_PRECISION);
        return Some(T::Decimal(p, s.min(p)));
    }
    if a.is_numeric() && b.is_numeric() {
        return Some(if matches!((a, b), (T::Float, T::Float)) {
            T::Float
        } else {
            T::Double
        });
    }
    match (a, b) {
        (T::Time(p), T::Time(q)) => Some(T::Time(p.max(q))),
        (T::Nested(x), T::Nested(y)) => match (x.get(), y.get()) {
            (Nested::Array(e), Nested::Array(f)) => Some(array_of(common_type(*e, *f)?)),
            (Nested::Map(k1, v1), Nested::Map(k2, v2)) => {
                Some(map_of(common_type(*k1, *k2)?, common_type(*v1, *v2)?))
            }
            (Nested::Row(f1), Nested::Row(f2)) if f1.len() == f2.len() => Some(row_of(
                f1.iter()
                    .zip(f2)
                    .map(|((n, t), (_, u))| Some((n.clone(), common_type(*t, *u)?)))
                    .collect::<Option<Vec<_>>>()?,
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The common type of `types` (None entries are untyped NULLs and fit any), or why there
/// is none.
pub(crate) fn common_of(types: &[Option<SqlType>]) -> Result<SqlType, String> {
    let mut known = types.iter().flatten();
    let Some(first) = known.next() else {
        return Err("has only NULLs: cast one of them to a type".into());
    };
    known.try_fold(*first, |acc, t| {
        common_type(acc, *t).ok_or_else(|| {
            format!(
                "takes values of one type, not {} and {}",
                acc.sql_name(),
                t.sql_name()
            )
        })
    })
}
