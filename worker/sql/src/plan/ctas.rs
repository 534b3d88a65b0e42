//! `CREATE TABLE t WITH (…) AS SELECT …` (CTAS): the table takes the query's schema (or the
//! column list written, which must match the query by name and type), then the query is
//! inserted into it as one more pipeline of the statement set.

use super::{Planner, norm};
use crate::error::{Result, SqlError};
use crate::nested::Nested;
use crate::parse::{ColumnDef, ColumnKind, TableDef};
use crate::value::{Column, SqlType};
use sqlparser::ast::{self, Ident, Query, Spanned};
use weir_engine::api::StreamExecutionEnvironment;

/// The DDL type a query column's table column is declared with.
fn declared_type(ty: SqlType) -> ast::DataType {
    match ty {
        SqlType::Boolean => ast::DataType::Boolean,
        SqlType::BigInt => ast::DataType::BigInt(None),
        SqlType::Int => ast::DataType::Int(None),
        SqlType::SmallInt => ast::DataType::SmallInt(None),
        SqlType::TinyInt => ast::DataType::TinyInt(None),
        SqlType::Double => ast::DataType::Double(ast::ExactNumberInfo::None),
        SqlType::Float => ast::DataType::Float(ast::ExactNumberInfo::None),
        SqlType::Date => ast::DataType::Date,
        SqlType::Time(p) => ast::DataType::Time(Some(p.into()), ast::TimezoneInfo::None),
        SqlType::Bytes => ast::DataType::Bytes(None),
        SqlType::String => ast::DataType::String(None),
        SqlType::Timestamp => ast::DataType::Timestamp(Some(3), ast::TimezoneInfo::None),
        SqlType::Decimal(p, s) => {
            ast::DataType::Decimal(ast::ExactNumberInfo::PrecisionAndScale(p.into(), s.into()))
        }
        SqlType::Nested(n) => match n.get() {
            Nested::Array(e) => ast::DataType::Array(ast::ArrayElemTypeDef::AngleBracket(
                Box::new(declared_type(*e)),
            )),
            Nested::Map(k, v) => {
                ast::DataType::Map(Box::new(declared_type(*k)), Box::new(declared_type(*v)))
            }
            Nested::Row(fields) => ast::DataType::Struct(
                fields
                    .iter()
                    .map(|(name, t)| ast::StructField {
                        field_name: Some(ast::Ident::with_quote('`', name)),
                        field_type: declared_type(*t),
                        options: None,
                    })
                    .collect(),
                ast::StructBracketKind::AngleBrackets,
            ),
        },
    }
}

impl Planner<'_> {
    pub(super) fn create_table_as(&mut self, mut def: TableDef, query: &Query) -> Result<()> {
        let name = norm(&def.name);
        if self.tables.contains_key(&name) || self.views.contains_key(&name) {
            return Err(SqlError::at(
                def.name.span,
                format!("a table or view named '{name}' already exists"),
            ));
        }
        if let Some(w) = &def.watermark {
            return Err(SqlError::at(
                w.column.span,
                "CREATE TABLE … AS SELECT cannot declare a WATERMARK: the table is a sink",
            ));
        }
        let cols = self.query_columns(query)?;
        def.columns = if def.columns.is_empty() {
            cols.iter()
                .map(|c| ColumnDef {
                    ident: Ident::with_quote('"', c.name.clone()),
                    kind: ColumnKind::Physical(declared_type(c.ty)),
                })
                .collect()
        } else {
            Self::match_column_list(&name, &def.columns, &cols, query)?
        };
        self.create_table(def.clone())?;
        let text = self.insert(&def.name, query)?;
        self.plans.push(text);
        self.pipelines += 1;
        Ok(())
    }

    /// The written column list, checked against the query's columns: the same names (in
    /// any order) with the same types (BIGINT may widen to DOUBLE). The table takes the
    /// query's column order, as in Flink.
    fn match_column_list(
        table: &str,
        listed: &[ColumnDef],
        cols: &[Column],
        query: &Query,
    ) -> Result<Vec<ColumnDef>> {
        let names = || {
            cols.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for c in listed {
            let n = norm(&c.ident);
            let ColumnKind::Physical(t) = &c.kind else {
                return Err(SqlError::at(
                    c.ident.span,
                    format!(
                        "column '{n}' of CREATE TABLE {table} … AS SELECT is computed; the table is a sink and can only declare physical columns"
                    ),
                ));
            };
            let Some(q) = cols.iter().find(|q| q.name == n) else {
                return Err(SqlError::at(
                    c.ident.span,
                    format!(
                        "column '{n}' of CREATE TABLE {table} is not a column of its query, which produces [{}]; name the query's columns with AS",
                        names()
                    ),
                ));
            };
            let ty = super::sql_type(t, c.ident.span)?;
            if ty != q.ty && !super::widens(q.ty, ty) {
                return Err(SqlError::at(
                    c.ident.span,
                    format!(
                        "column '{n}' of CREATE TABLE {table} is declared {} but the query produces {}; declare it {} or add a CAST in the query",
                        ty.sql_name(),
                        q.ty.sql_name(),
                        q.ty.sql_name()
                    ),
                ));
            }
        }
        if listed.len() != cols.len() {
            return Err(SqlError::at(
                query.span(),
                format!(
                    "the query produces {} columns [{}] but CREATE TABLE {table} lists {} [{}]; list every column of the query, or none",
                    cols.len(),
                    names(),
                    listed.len(),
                    listed
                        .iter()
                        .map(|c| norm(&c.ident))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        cols.iter()
            .map(|q| {
                listed
                    .iter()
                    .find(|c| norm(&c.ident) == q.name)
                    .cloned()
                    .ok_or_else(|| {
                        SqlError::at(
                            query.span(),
                            format!(
                                "column '{}' of the query is not listed in CREATE TABLE {table}; list every column of the query, or none",
                                q.name
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The columns `q` produces, planned on a scratch environment (nothing is added to the
    /// job, and the uids of this statement's operators are unaffected).
    fn query_columns(&mut self, q: &Query) -> Result<Vec<Column>> {
        let scratch = StreamExecutionEnvironment::with_config(self.env.config());
        let mut sub = Planner::new(&scratch).with_connectors(self.connectors.clone());
        std::mem::swap(&mut sub.tables, &mut self.tables);
        std::mem::swap(&mut sub.views, &mut self.views);
        std::mem::swap(&mut sub.funcs, &mut self.funcs);
        std::mem::swap(&mut sub.udfs, &mut self.udfs);
        sub.stmt = self.stmt;
        let res = sub.query(q).map(|s| s.cols);
        std::mem::swap(&mut sub.tables, &mut self.tables);
        std::mem::swap(&mut sub.views, &mut self.views);
        std::mem::swap(&mut sub.funcs, &mut self.funcs);
        std::mem::swap(&mut sub.udfs, &mut self.udfs);
        res
    }
}
