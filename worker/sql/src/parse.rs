//! Splits a script into statements and parses Flink's DDL, which standard SQL parsers do not
//! know (`WATERMARK FOR`, computed columns `c AS expr`, `WITH ('k' = 'v')`). Everything else
//! (queries, expressions, types) is parsed by sqlparser on the same token stream, so every
//! position refers to the original text.

use crate::error::{Result, SqlError};
use sqlparser::ast::{DataType, Expr, Ident, ObjectName, Query};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Whitespace};
use std::collections::BTreeMap;

/// A column of `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    /// The identifier as written.
    pub ident: Ident,
    /// Physical (read from the connector) or computed.
    pub kind: ColumnKind,
}

/// How a column gets its value.
#[derive(Debug, Clone)]
pub enum ColumnKind {
    /// Read from the connector, with its declared type.
    Physical(DataType),
    /// `name AS expr`, computed from the physical columns.
    Computed(Box<Expr>),
    /// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`: read from (or, unless virtual, written
    /// to) the connector's metadata about a record rather than its payload.
    Metadata {
        /// The declared type.
        ty: DataType,
        /// The metadata key (`FROM 'key'`; the column's name when absent).
        key: Option<String>,
        /// `VIRTUAL`: read only, never written by a sink.
        is_virtual: bool,
    },
}

/// `WATERMARK FOR col AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    /// The rowtime column.
    pub column: Ident,
    /// The watermark expression.
    pub expr: Expr,
}

/// `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name.
    pub name: Ident,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// The watermark declaration, if any.
    pub watermark: Option<WatermarkDef>,
    /// `PARTITIONED BY (…)` columns, in order.
    pub partition_keys: Vec<Ident>,
    /// `PRIMARY KEY (…) NOT ENFORCED` columns, in order (empty: none declared).
    pub primary_key: Vec<Ident>,
    /// The `WITH` options, keys as written.
    pub options: BTreeMap<String, String>,
    /// Where each option key was written (for errors).
    pub option_spans: BTreeMap<String, Span>,
    /// Where the statement starts.
    pub span: Span,
}

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE`
    CreateTable(Box<TableDef>),
    /// `CREATE VIEW name AS query`
    CreateView {
        /// View name.
        name: Ident,
        /// Its query.
        query: Box<Query>,
    },
    /// `INSERT INTO table query`
    Insert {
        /// Target table.
        table: Ident,
        /// The query.
        query: Box<Query>,
    },
    /// A bare query: its result is printed.
    Select(Box<Query>),
    /// `EXPLAIN stmt`: print the streaming plan of an INSERT or query.
    Explain(Box<Statement>),
    /// `CREATE TABLE name [(columns)] WITH (…) AS query`: a sink table with the query's
    /// schema, filled by the query.
    CreateTableAs {
        /// The table (no columns when the statement lists none).
        def: Box<TableDef>,
        /// The query.
        query: Box<Query>,
    },
    /// `CREATE TEMPORARY [SYSTEM] FUNCTION`
    CreateFunction(Box<crate::udf::FunctionDef>),
    /// `DROP TEMPORARY [SYSTEM] FUNCTION [IF EXISTS] name`
    DropFunction {
        /// The function's SQL name.
        name: Ident,
        /// `SYSTEM`
        system: bool,
        /// `IF EXISTS`
        if_exists: bool,
    },
}

pub(crate) fn err_here(p: &Parser<'_>, msg: impl Into<String>) -> SqlError {
    SqlError::at(p.peek_token_ref().span, msg)
}

pub(crate) fn single_ident(p: &mut Parser<'_>, what: &str) -> Result<Ident> {
    let span = p.peek_token_ref().span;
    let name: ObjectName = p.parse_object_name(false).map_err(SqlError::from_parser)?;
    if name.0.len() != 1 {
        return Err(SqlError::at(
            span,
            format!(
                "{what} '{name}': catalogs and databases are not supported yet; use a plain name"
            ),
        ));
    }
    name.0[0]
        .as_ident()
        .cloned()
        .ok_or_else(|| SqlError::at(span, format!("'{name}' is not a valid {what} name")))
}

/// Parses a query.
fn parse_query(p: &mut Parser<'_>) -> Result<Box<Query>> {
    p.parse_query().map_err(SqlError::from_parser)
}

/// Parses a whole script.
pub fn parse_script(sql: &str) -> Result<Vec<Statement>> {
    let dialect = GenericDialect {};
    let tokens = sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::from_parser(e.into()))?;
    crate::limits::check_nesting(&tokens)?;
    let mut p = Parser::new(&dialect).with_tokens_with_locations(crate::tvf::untable_tvf_args(
        json_clause_tokens(is_json_tokens(nested_tokens(tokens))),
    ));
    let mut out = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if p.peek_token_ref().token == Token::EOF {
            break;
        }
        let mut stmt = parse_statement(&mut p)?;
        crate::limits::shape(&mut stmt)?;
        out.push(stmt);
        let t = p.peek_token();
        if t.token != Token::SemiColon && t.token != Token::EOF {
            return Err(SqlError::at(
                t.span,
                format!("syntax error: expected ';' or the end of the statement, found '{t}'"),
            ));
        }
    }
    Ok(out)
}

/// Parses one expression as a script's expressions are parsed (Flink's `IS JSON` included).
pub fn parse_expression(sql: &str) -> Result<Expr> {
    let dialect = GenericDialect {};
    let tokens = sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::from_parser(e.into()))?;
    crate::limits::check_nesting(&tokens)?;
    Parser::new(&dialect)
        .with_tokens_with_locations(json_clause_tokens(is_json_tokens(nested_tokens(tokens))))
        .parse_expr()
        .map_err(SqlError::from_parser)
}

/// Flink's `x IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]`, which sqlparser does not
/// parse, as the postfix predicate sqlparser has with the same precedence and four forms,
/// `x IS [NOT] [form] NORMALIZED` (VALUE: no form, SCALAR: NFC, ARRAY: NFD, OBJECT: NFKC);
/// [`crate::expr`] turns it into a call of `is_json`. Flink has no `IS NORMALIZED`: one
/// written in the script is made an identifier, which sqlparser refuses where it stands.
fn is_json_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    let next = |from: usize| {
        (from..tokens.len()).find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if word(&tokens[i], Keyword::NORMALIZED) {
            out.push(TokenWithSpan {
                token: Token::make_word("NORMALIZED", Some('"')),
                span: tokens[i].span,
            });
            i += 1;
            continue;
        }
        if word(&tokens[i], Keyword::IS) {
            let mut j = next(i + 1);
            let not = j.is_some_and(|j| word(&tokens[j], Keyword::NOT));
            if not {
                j = j.and_then(|j| next(j + 1));
            }
            if let Some(json) = j.filter(|&j| word(&tokens[j], Keyword::JSON)) {
                let span = tokens[json].span;
                let mut end = json + 1;
                let mut form = None;
                if let Some(k) = next(json + 1)
                    && let Token::Word(w) = &tokens[k].token
                {
                    form = match w.value.to_ascii_uppercase().as_str() {
                        "VALUE" => Some(None),
                        "SCALAR" => Some(Some("NFC")),
                        "ARRAY" => Some(Some("NFD")),
                        "OBJECT" => Some(Some("NFKC")),
                        _ => None,
                    };
                    if form.is_some() {
                        end = k + 1;
                    }
                }
                let t = |token: Token| TokenWithSpan { token, span };
                let space = || t(Token::Whitespace(Whitespace::Space));
                out.extend([tokens[i].clone(), space()]);
                if not {
                    out.extend([t(Token::make_keyword("NOT")), space()]);
                }
                if let Some(Some(form)) = form {
                    out.extend([t(Token::make_keyword(form)), space()]);
                }
                out.push(t(Token::make_keyword("NORMALIZED")));
                i = end;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Flink's `JSON_VALUE(json, path [RETURNING type] [behaviour ON EMPTY] [behaviour ON ERROR])`
/// (behaviour: `NULL`, `ERROR` or `DEFAULT expr`) and `JSON_EXISTS(json, path [TRUE | FALSE |
/// UNKNOWN | ERROR ON ERROR])`, which sqlparser does not parse, as calls with the behaviours
/// as more arguments: `JSON_VALUE(json, path, 'NULL', NULL, 'DEFAULT', expr [RETURNING
/// type])`, `JSON_EXISTS(json, path, 'TRUE')`; [`crate::builtins`] evaluates them. A call
/// without such clauses is left as it is.
fn json_clause_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_ws = |t: &TokenWithSpan| matches!(t.token, Token::Whitespace(_));
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let name = match &tokens[i].token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        };
        let open = (i + 1..tokens.len()).find(|&j| !is_ws(&tokens[j]));
        let close = open
            .filter(|&o| tokens[o].token == Token::LParen)
            .and_then(|o| matching_paren(&tokens, o));
        let (Some(open), Some(close), true) =
            (open, close, name == "JSON_VALUE" || name == "JSON_EXISTS")
        else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        // Calls inside the arguments (and inside DEFAULT expressions) first.
        let inner = json_clause_tokens(tokens[open + 1..close].to_vec());
        out.extend(tokens[i..=open].iter().cloned());
        out.extend(with_behaviour_args(inner, name == "JSON_VALUE"));
        out.push(tokens[close].clone());
        i = close + 1;
    }
    out
}

/// Flink's nested types and MAP constructor in the forms sqlparser parses: `MAP<K, V>` as
/// `MAP(K, V)`, `ROW<a INT>` as `STRUCT<a INT>`, and `MAP[k, v, …]` as a call
/// `map_value(k, v, …)` (see [`crate::builtins`]). `>>` closing two type lists is two `>`
/// (Flink has no shift operator).
fn nested_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if t.token == Token::ShiftRight {
            out.push(TokenWithSpan::new(Token::Gt, t.span));
            out.push(TokenWithSpan::new(Token::Gt, t.span));
        } else {
            out.push(t);
        }
    }
    let is_ws = |t: &TokenWithSpan| matches!(t.token, Token::Whitespace(_));
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
    let mut i = 0;
    while i < out.len() {
        let (is_map, is_row) = (word(&out[i], Keyword::MAP), word(&out[i], Keyword::ROW));
        let next = (i + 1..out.len()).find(|&j| !is_ws(&out[j]));
        match (next.map(|j| &out[j].token), next) {
            (Some(Token::Lt), Some(open)) if is_map => {
                if let Some(close) = matching(&out, open, &Token::Lt, &Token::Gt) {
                    out[open].token = Token::LParen;
                    out[close].token = Token::RParen;
                }
            }
            (Some(Token::Lt), Some(_)) if is_row => {
                out[i].token = Token::make_keyword("STRUCT");
            }
            (Some(Token::LBracket), Some(open)) if is_map => {
                if let Some(close) = matching(&out, open, &Token::LBracket, &Token::RBracket) {
                    out[i].token = Token::make_word("map_value", None);
                    out[open].token = Token::LParen;
                    out[close].token = Token::RParen;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The index of the `close` token matching the `open` token at `at`.
fn matching(tokens: &[TokenWithSpan], at: usize, open: &Token, close: &Token) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(at) {
        if t.token == *open {
            depth += 1;
        } else if t.token == *close {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The arguments of a JSON_VALUE (`value`) or JSON_EXISTS call with their ON EMPTY / ON ERROR
/// clauses made arguments (see [`json_clause_tokens`]); unchanged without clauses.
fn with_behaviour_args(args: Vec<TokenWithSpan>, value: bool) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan| match &t.token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    // The non-whitespace tokens at the call's top level, by position.
    let mut depth = 0usize;
    let mut top = Vec::new();
    for (j, t) in args.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Whitespace(_) => continue,
            _ if depth == 0 => top.push(j),
            _ => {}
        }
    }
    // `… ON EMPTY|ERROR` at the top level, each with the top-level position its behaviour
    // starts at (a DEFAULT's expression runs from after DEFAULT to ON).
    let mut clauses: Vec<(usize, usize, String, String)> = Vec::new(); // (from, to, target, behaviour)
    let mut k = 0;
    while k + 1 < top.len() {
        let target = word(&args[top[k + 1]]);
        if word(&args[top[k]]) != "ON" || (target != "EMPTY" && target != "ERROR") {
            k += 1;
            continue;
        }
        let from_k = match clauses.last() {
            Some(&(_, to, ..)) => top.iter().position(|&t| t > to).unwrap_or(k),
            None => 0,
        };
        // The behaviour: the word before ON, or DEFAULT and everything after it.
        let default_at = (from_k..k)
            .rev()
            .find(|&d| word(&args[top[d]]) == "DEFAULT");
        let start = match default_at {
            Some(d) if value => d,
            _ if k > 0 => k - 1,
            _ => {
                k += 1;
                continue;
            }
        };
        let behaviour = word(&args[top[start]]);
        clauses.push((top[start], top[k + 1], target, behaviour));
        k += 2;
    }
    if clauses.is_empty() {
        return args;
    }
    let span = args[clauses[0].0].span;
    let t = |token: Token| TokenWithSpan { token, span };
    let lit = |s: &str| t(Token::SingleQuotedString(s.to_string()));
    let comma = || t(Token::Comma);
    let null = || t(Token::make_keyword("NULL"));
    // What the call's arguments end at: RETURNING, or the first clause.
    let returning = top
        .iter()
        .copied()
        .find(|&j| word(&args[j]) == "RETURNING" && j < clauses[0].0);
    let end = returning.unwrap_or(clauses[0].0);
    let mut out: Vec<TokenWithSpan> = args[..end].to_vec();
    let behaviour = |target: &str| clauses.iter().find(|c| c.2 == target);
    if value {
        for target in ["EMPTY", "ERROR"] {
            match behaviour(target) {
                Some((from, _, _, b)) if b == "DEFAULT" => {
                    // The expression: from after DEFAULT to before ON.
                    let on = top
                        .iter()
                        .copied()
                        .find(|&j| j > *from && word(&args[j]) == "ON")
                        .unwrap_or(*from + 1);
                    out.extend([comma(), lit("DEFAULT"), comma()]);
                    out.extend(args[from + 1..on].iter().cloned());
                }
                Some((_, _, _, b)) => out.extend([comma(), lit(b), comma(), null()]),
                None => out.extend([comma(), lit("NULL"), comma(), null()]),
            }
        }
    } else if let Some((_, _, _, b)) = behaviour("ERROR") {
        out.extend([comma(), lit(b)]);
    }
    if let Some(r) = returning {
        out.push(t(Token::Whitespace(Whitespace::Space)));
        out.extend(args[r..clauses[0].0].iter().cloned());
    }
    // Anything after the last clause stays (sqlparser reports it where it stands).
    let last = clauses.last().map_or(args.len(), |c| c.1 + 1);
    out.extend(args[last..].iter().cloned());
    out
}

fn parse_statement(p: &mut Parser<'_>) -> Result<Statement> {
    let start = p.peek_token_ref().span;
    if p.parse_keyword(Keyword::EXPLAIN) {
        let _ = p.parse_keywords(&[Keyword::PLAN, Keyword::FOR]);
        let inner = parse_statement(p)?;
        return match inner {
            Statement::Insert { .. } | Statement::Select(_) => {
                Ok(Statement::Explain(Box::new(inner)))
            }
            _ => Err(SqlError::at(
                start,
                "EXPLAIN supports INSERT INTO and queries",
            )),
        };
    }
    if p.parse_keyword(Keyword::CREATE) {
        let temporary = p.parse_keyword(Keyword::TEMPORARY);
        if temporary && p.parse_keyword(Keyword::SYSTEM) {
            p.expect_keyword(Keyword::FUNCTION)
                .map_err(SqlError::from_parser)?;
            return crate::udf::parse_create_function(p, start, true, true);
        }
        if p.parse_keyword(Keyword::TABLE) {
            if p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]) {
                return Err(SqlError::at(
                    start,
                    "CREATE TABLE IF NOT EXISTS is not supported yet",
                ));
            }
            return parse_create_table(p, start);
        }
        if p.parse_keyword(Keyword::VIEW) {
            let name = single_ident(p, "view")?;
            p.expect_keyword(Keyword::AS)
                .map_err(SqlError::from_parser)?;
            let query = parse_query(p)?;
            return Ok(Statement::CreateView { name, query });
        }
        if p.parse_keyword(Keyword::FUNCTION) {
            return crate::udf::parse_create_function(p, start, temporary, false);
        }
        return Err(err_here(p, "expected TABLE, VIEW or FUNCTION after CREATE"));
    }
    if p.parse_keyword(Keyword::DROP) {
        return crate::udf::parse_drop_function(p, start);
    }
    if p.parse_keyword(Keyword::INSERT) {
        if p.parse_keyword(Keyword::OVERWRITE) {
            return Err(SqlError::at(
                start,
                "INSERT OVERWRITE is not supported in streaming mode",
            ));
        }
        p.expect_keyword(Keyword::INTO)
            .map_err(SqlError::from_parser)?;
        let table = single_ident(p, "table")?;
        if p.peek_token_ref().token == Token::LParen {
            return Err(err_here(
                p,
                "INSERT with a column list is not supported yet; select the sink's columns in order",
            ));
        }
        let query = parse_query(p)?;
        return Ok(Statement::Insert { table, query });
    }
    if p.peek_keyword(Keyword::SELECT)
        || p.peek_keyword(Keyword::WITH)
        || p.peek_token_ref().token == Token::LParen
    {
        let query = parse_query(p)?;
        return Ok(Statement::Select(query));
    }
    let t = p.peek_token();
    Err(SqlError::at(
        t.span,
        format!(
            "unsupported statement starting with '{t}'; supported are CREATE TABLE, CREATE VIEW, CREATE/DROP TEMPORARY FUNCTION, INSERT INTO, SELECT and EXPLAIN"
        ),
    ))
}

/// Consumes the next token if it is the (non-reserved) word `w`.
fn parse_word(p: &mut Parser<'_>, w: &str) -> bool {
    if let Token::Word(word) = &p.peek_token_ref().token
        && word.quote_style.is_none()
        && word.value.eq_ignore_ascii_case(w)
    {
        p.next_token();
        return true;
    }
    false
}

/// `NOT ENFORCED` after a primary key: Flink does not check keys, and says so in the DDL.
fn not_enforced(p: &mut Parser<'_>, at: Span) -> Result<()> {
    if p.parse_keyword(Keyword::NOT) && parse_word(p, "ENFORCED") {
        return Ok(());
    }
    Err(SqlError::at(
        at,
        "a PRIMARY KEY must be declared NOT ENFORCED (Weir, like Flink, does not check it): \
         write PRIMARY KEY (…) NOT ENFORCED",
    ))
}

fn parse_create_table(p: &mut Parser<'_>, span: Span) -> Result<Statement> {
    let name = single_ident(p, "table")?;
    let mut columns = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    // CREATE TABLE … AS SELECT may leave the columns to its query.
    let listed = p.consume_token(&Token::LParen);
    if listed {
        loop {
            let at = p.peek_token_ref().span;
            if parse_word(p, "WATERMARK") {
                p.expect_keyword(Keyword::FOR)
                    .map_err(SqlError::from_parser)?;
                let column = p.parse_identifier().map_err(SqlError::from_parser)?;
                p.expect_keyword(Keyword::AS)
                    .map_err(SqlError::from_parser)?;
                let expr = p.parse_expr().map_err(SqlError::from_parser)?;
                if watermark.is_some() {
                    return Err(SqlError::at(at, "a table can declare only one WATERMARK"));
                }
                watermark = Some(WatermarkDef { column, expr });
            } else if p.parse_keyword(Keyword::PRIMARY) || p.parse_keyword(Keyword::CONSTRAINT) {
                // `[CONSTRAINT name] PRIMARY KEY (a, b) NOT ENFORCED`
                if p.peek_keyword(Keyword::KEY) {
                    p.expect_keyword(Keyword::KEY)
                        .map_err(SqlError::from_parser)?;
                } else {
                    p.parse_identifier().map_err(SqlError::from_parser)?;
                    p.expect_keywords(&[Keyword::PRIMARY, Keyword::KEY])
                        .map_err(SqlError::from_parser)?;
                }
                if !primary_key.is_empty() {
                    return Err(SqlError::at(at, "a table can declare only one PRIMARY KEY"));
                }
                p.expect_token(&Token::LParen)
                    .map_err(SqlError::from_parser)?;
                loop {
                    primary_key.push(p.parse_identifier().map_err(SqlError::from_parser)?);
                    if p.consume_token(&Token::Comma) {
                        continue;
                    }
                    p.expect_token(&Token::RParen)
                        .map_err(SqlError::from_parser)?;
                    break;
                }
                not_enforced(p, at)?;
            } else {
                let ident = p.parse_identifier().map_err(SqlError::from_parser)?;
                let kind = if p.parse_keyword(Keyword::AS) {
                    ColumnKind::Computed(Box::new(p.parse_expr().map_err(SqlError::from_parser)?))
                } else {
                    let ty = p.parse_data_type().map_err(SqlError::from_parser)?;
                    // Nullability is accepted and not enforced.
                    if p.parse_keyword(Keyword::NOT) {
                        p.expect_keyword(Keyword::NULL)
                            .map_err(SqlError::from_parser)?;
                    } else {
                        let _ = p.parse_keyword(Keyword::NULL);
                    }
                    if p.parse_keyword(Keyword::METADATA) {
                        let key = if p.parse_keyword(Keyword::FROM) {
                            Some(p.parse_literal_string().map_err(SqlError::from_parser)?)
                        } else {
                            None
                        };
                        let is_virtual = parse_word(p, "VIRTUAL");
                        ColumnKind::Metadata {
                            ty,
                            key,
                            is_virtual,
                        }
                    } else {
                        if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                            if !primary_key.is_empty() {
                                return Err(SqlError::at(
                                    at,
                                    "a table can declare only one PRIMARY KEY",
                                ));
                            }
                            not_enforced(p, at)?;
                            primary_key.push(ident.clone());
                        }
                        ColumnKind::Physical(ty)
                    }
                };
                columns.push(ColumnDef { ident, kind });
            }
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)
                .map_err(SqlError::from_parser)?;
            break;
        }
    }
    let mut options = BTreeMap::new();
    let mut option_spans = BTreeMap::new();
    let mut partition_keys = Vec::new();
    if p.parse_keyword(Keyword::PARTITIONED) {
        p.expect_keyword(Keyword::BY)
            .map_err(SqlError::from_parser)?;
        p.expect_token(&Token::LParen)
            .map_err(SqlError::from_parser)?;
        loop {
            partition_keys.push(p.parse_identifier().map_err(SqlError::from_parser)?);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)
                .map_err(SqlError::from_parser)?;
            break;
        }
    }
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)
            .map_err(SqlError::from_parser)?;
        loop {
            let at = p.peek_token_ref().span;
            let k = p.parse_literal_string().map_err(SqlError::from_parser)?;
            p.expect_token(&Token::Eq).map_err(SqlError::from_parser)?;
            let v = p.parse_literal_string().map_err(SqlError::from_parser)?;
            option_spans.insert(k.clone(), at);
            options.insert(k, v);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)
                .map_err(SqlError::from_parser)?;
            break;
        }
    }
    let def = Box::new(TableDef {
        name,
        columns,
        watermark,
        partition_keys,
        primary_key,
        options,
        option_spans,
        span,
    });
    if p.parse_keyword(Keyword::AS) {
        let query = parse_query(p)?;
        return Ok(Statement::CreateTableAs { def, query });
    }
    if !listed {
        return Err(SqlError::at(
            def.name.span,
            format!(
                "CREATE TABLE {} needs a column list, or AS SELECT … to take the query's columns",
                def.name
            ),
        ));
    }
    Ok(Statement::CreateTable(def))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> String {
        parse_expression(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .to_string()
    }

    #[test]
    fn json_on_empty_and_on_error_clauses_become_arguments_of_the_call() {
        for (flink, call) in [
            (
                "JSON_VALUE(s, '$.a' RETURNING INT DEFAULT -1 ON EMPTY ERROR ON ERROR)",
                "JSON_VALUE(s, '$.a', 'DEFAULT', -1, 'ERROR', NULL RETURNING INT)",
            ),
            (
                "json_value(s, '$.a' null on empty default 'x' on error)",
                "json_value(s, '$.a', 'NULL', NULL, 'DEFAULT', 'x')",
            ),
            // Only ON ERROR; an argument that is itself a call with clauses.
            (
                "JSON_VALUE(JSON_VALUE(t, '$.b' ERROR ON EMPTY), p DEFAULT 'x' ON ERROR)",
                "JSON_VALUE(JSON_VALUE(t, '$.b', 'ERROR', NULL, 'NULL', NULL), p, 'NULL', NULL, 'DEFAULT', 'x')",
            ),
            (
                "JSON_EXISTS(s, 'strict $.a' UNKNOWN ON ERROR)",
                "JSON_EXISTS(s, 'strict $.a', 'UNKNOWN')",
            ),
            // Without clauses (and a NULL that is an argument) nothing changes.
            (
                "JSON_VALUE(NULL, '$.a' RETURNING DOUBLE)",
                "JSON_VALUE(NULL, '$.a' RETURNING DOUBLE)",
            ),
            ("JSON_EXISTS(s, '$.a')", "JSON_EXISTS(s, '$.a')"),
        ] {
            assert_eq!(parsed(flink), call, "{flink}");
        }
    }
}
