//! Errors of the SQL layer: every planning error names a `line:column` in the SQL text.

use sqlparser::tokenizer::{Location, Span};

/// An error in a SQL script or while running it.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The SQL text is invalid or unsupported at `line:column`.
    #[error("{line}:{column}: {message}")]
    At {
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong and, where possible, what to do.
        message: String,
    },
    /// The engine rejected or failed the job.
    #[error(transparent)]
    Engine(#[from] weir_engine::Error),
}

/// Result of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl SqlError {
    /// An error at the start of `span` (line 1, column 1 when the span is unknown).
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        Self::at_location(span.start, message)
    }

    /// An error at `loc`.
    pub fn at_location(loc: Location, message: impl Into<String>) -> Self {
        SqlError::At {
            line: loc.line.max(1),
            column: loc.column.max(1),
            message: message.into(),
        }
    }

    /// Converts a sqlparser error, moving its "at Line: l, Column: c" suffix to the front.
    pub fn from_parser(e: sqlparser::parser::ParserError) -> Self {
        let text = match e {
            sqlparser::parser::ParserError::ParserError(s)
            | sqlparser::parser::ParserError::TokenizerError(s) => s,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "the statement is nested too deeply".to_string()
            }
        };
        if let Some((msg, pos)) = text.rsplit_once(" at Line: ")
            && let Some((l, c)) = pos.split_once(", Column: ")
            && let (Ok(line), Ok(column)) = (l.trim().parse(), c.trim().parse::<u64>())
        {
            return SqlError::At {
                line,
                column,
                message: format!("syntax error: {}", msg.trim()),
            };
        }
        SqlError::At {
            line: 1,
            column: 1,
            message: format!("syntax error: {text}"),
        }
    }
}
