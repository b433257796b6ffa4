//! SELECT execution and the tables it can read: `sys.databases` (from the instance state) and the
//! chat table `dbo.Messages` of a user database. A table is materialised as columns + rows, then
//! the FROM/JOIN rows are filtered by WHERE, aggregated or projected, ordered and cut by TOP.
//! Name resolution errors are SQL Server's: 208 for an unknown object, 207/209 for columns.

use std::cmp::Ordering;

use super::eval::{
    Binding, Scope, compare, eval, eval_aggregate, has_aggregate, infer_type, truth,
};
use super::state::{Database, DbState, InstanceState};
use super::{EvalCtx, errors};
use crate::sqlsim::sql::ast::{Expr, ObjectName, Select, SelectItem};
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

/// A materialised table.
pub struct Table {
    /// Column definitions.
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
}

/// A result set: columns and rows.
pub struct RowSet {
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
}

type QResult<T> = Result<T, ServerMessage>;

/// Column layout of `dbo.Messages`.
pub fn messages_columns() -> Vec<Column> {
    vec![
        Column::new("id", SqlType::BigInt),
        Column::new("room", SqlType::NVarChar(Some(128))),
        Column::new("author", SqlType::NVarChar(Some(128))),
        Column::new("body", SqlType::NVarChar(None)),
        Column::new("posted_at", SqlType::DateTime2(7)),
    ]
}

/// Checks that a database can be used by a statement (not restoring, not offline).
pub fn check_accessible(db: &Database) -> QResult<()> {
    match db.state {
        DbState::Restoring | DbState::Recovering => Err(errors::database_restoring(&db.name)),
        DbState::Offline => Err(errors::database_offline(&db.name)),
        _ => Ok(()),
    }
}

/// Which user database a `dbo.Messages` reference points at, or 208.
pub fn messages_database<'s>(
    name: &ObjectName,
    state: &'s InstanceState,
    current_db: &str,
) -> QResult<&'s Database> {
    let schema_ok = name.schema().is_none_or(|s| s.eq_ignore_ascii_case("dbo"));
    let db_name = name.database().unwrap_or(current_db);
    let db = state
        .database(db_name)
        .filter(|d| {
            !d.is_system
                && schema_ok
                && name.object().eq_ignore_ascii_case("Messages")
                && name.parts.len() <= 3
        })
        .ok_or_else(|| errors::invalid_object(&name.display()))?;
    check_accessible(db)?;
    Ok(db)
}

/// Resolves and materialises a table, or fails with 208.
pub fn resolve_table(name: &ObjectName, ctx: &EvalCtx<'_>) -> QResult<Table> {
    if let Some(t) = super::catalog::system_view(name, ctx) {
        return Ok(t);
    }
    let db = messages_database(name, ctx.state, &ctx.session.database)?;
    let rows = db
        .messages
        .iter()
        .map(|m| {
            vec![
                Value::Int(m.id),
                Value::Str(m.room.clone()),
                Value::Str(m.author.clone()),
                Value::Str(m.body.clone()),
                Value::DateTime(m.posted_at),
            ]
        })
        .collect();
    Ok(Table {
        columns: messages_columns(),
        rows,
    })
}

/// Runs a SELECT.
pub fn run_select(sel: &Select, ctx: &EvalCtx<'_>) -> QResult<RowSet> {
    // Materialise FROM and JOIN tables with their qualifiers.
    let mut tables: Vec<(String, Table)> = Vec::new();
    if let Some(from) = &sel.from {
        let q = from
            .alias
            .clone()
            .unwrap_or_else(|| from.name.object().to_string())
            .to_lowercase();
        tables.push((q, resolve_table(&from.name, ctx)?));
        for j in &sel.joins {
            let q = j
                .table
                .alias
                .clone()
                .unwrap_or_else(|| j.table.name.object().to_string())
                .to_lowercase();
            tables.push((q, resolve_table(&j.table.name, ctx)?));
        }
    }
    // Row combinations: indexes into each table; the join condition of table k is checked as soon
    // as table k is added (a nested-loop inner join).
    let mut combos: Vec<Vec<usize>> = if tables.is_empty() {
        vec![vec![]]
    } else {
        Vec::new()
    };
    if let Some((_, first)) = tables.first() {
        combos = (0..first.rows.len()).map(|i| vec![i]).collect();
        for (k, join) in sel.joins.iter().enumerate() {
            let mut next = Vec::new();
            for combo in &combos {
                for r in 0..tables[k + 1].1.rows.len() {
                    let mut c = combo.clone();
                    c.push(r);
                    if truth(&eval(&join.on, ctx, &scope_of(&tables, &c))?) == Some(true) {
                        next.push(c);
                    }
                }
            }
            combos = next;
        }
    }
    if let Some(filter) = &sel.filter {
        let mut kept = Vec::new();
        for c in combos {
            if truth(&eval(filter, ctx, &scope_of(&tables, &c))?) == Some(true) {
                kept.push(c);
            }
        }
        combos = kept;
    }
    let type_scope = scope_of(&tables, &[]);
    // Output columns.
    let mut out_cols = Vec::new();
    for item in &sel.items {
        match item {
            SelectItem::Wildcard(q) => {
                let q = q.as_ref().map(|q| q.to_lowercase());
                let mut any = false;
                for (tq, t) in &tables {
                    if q.as_ref().is_none_or(|q| q == tq) {
                        out_cols.extend(t.columns.iter().cloned());
                        any = true;
                    }
                }
                if !any {
                    return Err(match q {
                        Some(q) => errors::invalid_object(&q),
                        None => {
                            ServerMessage::new(263, 1, 16, "Must specify table to select from.")
                        }
                    });
                }
            }
            SelectItem::Expr { expr, alias } => {
                // Check column references even when there are no rows, as SQL Server compiles them.
                check_columns(expr, &type_scope)?;
                let name = alias.clone().unwrap_or_else(|| match expr {
                    Expr::Column(parts) => parts.last().cloned().unwrap_or_default(),
                    _ => String::new(),
                });
                out_cols.push(Column::new(name, infer_type(expr, ctx, &type_scope)));
            }
        }
    }
    let aggregate = sel
        .items
        .iter()
        .any(|i| matches!(i, SelectItem::Expr { expr, .. } if has_aggregate(expr)));
    let mut rows: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    if aggregate {
        let scopes: Vec<Scope<'_>> = combos.iter().map(|c| scope_of(&tables, c)).collect();
        let mut row = Vec::new();
        for item in &sel.items {
            match item {
                SelectItem::Expr { expr, .. } => row.push(eval_aggregate(expr, ctx, &scopes)?),
                SelectItem::Wildcard(_) => return Err(errors::syntax_near("*")),
            }
        }
        rows.push((Vec::new(), row));
    } else {
        for c in &combos {
            let scope = scope_of(&tables, c);
            let mut row = Vec::new();
            for item in &sel.items {
                match item {
                    SelectItem::Wildcard(q) => {
                        let q = q.as_ref().map(|q| q.to_lowercase());
                        for b in &scope.bindings {
                            if q.as_ref().is_none_or(|q| *q == b.qualifier) {
                                row.extend(b.row.iter().cloned());
                            }
                        }
                    }
                    SelectItem::Expr { expr, .. } => row.push(eval(expr, ctx, &scope)?),
                }
            }
            let mut keys = Vec::new();
            for (e, _) in &sel.order_by {
                keys.push(order_key(e, ctx, &scope, &out_cols, &row)?);
            }
            // DISTINCT compares output rows exactly (a case-insensitive collation would also
            // merge rows differing only in case; no statement failback sends depends on it).
            if sel.distinct && rows.iter().any(|(_, r)| *r == row) {
                continue;
            }
            rows.push((keys, row));
        }
    }
    if !sel.order_by.is_empty() {
        let desc: Vec<bool> = sel.order_by.iter().map(|(_, d)| *d).collect();
        rows.sort_by(|(a, _), (b, _)| {
            for (i, d) in desc.iter().enumerate() {
                // NULLs sort first ascending, as in SQL Server.
                let o = match (a[i].is_null(), b[i].is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    _ => compare(&a[i], &b[i])
                        .ok()
                        .flatten()
                        .unwrap_or(Ordering::Equal),
                };
                let o = if *d { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    let mut rows: Vec<Vec<Value>> = rows.into_iter().map(|(_, r)| r).collect();
    if let Some(top) = &sel.top {
        let n = eval(top, ctx, &Scope::default())?
            .as_i64()
            .unwrap_or(0)
            .max(0) as usize;
        rows.truncate(n);
    }
    Ok(RowSet {
        columns: out_cols,
        rows,
    })
}

/// An ORDER BY key: a source expression, or an output column alias.
fn order_key(
    e: &Expr,
    ctx: &EvalCtx<'_>,
    scope: &Scope<'_>,
    cols: &[Column],
    row: &[Value],
) -> QResult<Value> {
    match eval(e, ctx, scope) {
        Ok(v) => Ok(v),
        Err(err) => {
            if let Expr::Column(parts) = e
                && parts.len() == 1
                && let Some(i) = cols
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&parts[0]))
            {
                return Ok(row.get(i).cloned().unwrap_or(Value::Null));
            }
            Err(err)
        }
    }
}

fn check_columns(e: &Expr, scope: &Scope<'_>) -> QResult<()> {
    match e {
        Expr::Column(parts) if super::eval::is_current_timestamp(parts) => Ok(()),
        Expr::Column(parts) => scope.resolve(parts).map(|_| ()),
        Expr::Function { name, args } => args
            .iter()
            .skip(super::eval::keyword_args(name))
            .try_for_each(|a| check_columns(a, scope)),
        Expr::Neg(x) | Expr::Not(x) => check_columns(x, scope),
        Expr::Binary { left, right, .. } => {
            check_columns(left, scope)?;
            check_columns(right, scope)
        }
        _ => Ok(()),
    }
}

fn scope_of<'t>(tables: &'t [(String, Table)], combo: &[usize]) -> Scope<'t> {
    Scope {
        bindings: tables
            .iter()
            .enumerate()
            .map(|(i, (q, t))| Binding {
                qualifier: q.clone(),
                columns: &t.columns,
                row: combo
                    .get(i)
                    .and_then(|r| t.rows.get(*r))
                    .map_or(&[][..], |r| &r[..]),
            })
            .collect(),
    }
}
