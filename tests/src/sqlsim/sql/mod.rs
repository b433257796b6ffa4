//! T-SQL front end: [`lexer`] turns batch text into tokens, [`parser`] recognises the supported
//! statements on those tokens (never on raw text), [`ast`] holds what it recognises.

mod alter;
pub mod ast;
mod backup;
mod control;
mod expr;
pub mod lexer;
pub mod parser;
