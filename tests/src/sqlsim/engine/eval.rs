//! Expression evaluation and typing. A [`Scope`] binds the rows of the tables in a FROM clause to
//! their qualifiers, so `d.name` and plain `name` resolve the way SQL Server resolves them (207 for
//! an unknown column, 209 for an ambiguous one). Comparisons follow the instance collation
//! (case-insensitive) and three-valued logic: a NULL operand makes a comparison unknown.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::errors;
use super::{EvalCtx, SessionInfo};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::sql::ast::{BinOp, Expr};
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

/// Variable values: RPC parameters, keyed by lower-cased name including the `@`.
pub type Params = HashMap<String, Value>;

/// One table's columns and the current row, under a qualifier (alias or table name, lower case).
pub struct Binding<'r> {
    /// Lower-cased alias or table name.
    pub qualifier: String,
    /// Column definitions.
    pub columns: &'r [Column],
    /// Current row values (empty while only typing).
    pub row: &'r [Value],
}

/// The tables in scope for an expression.
#[derive(Default)]
pub struct Scope<'r> {
    /// Bindings in FROM/JOIN order.
    pub bindings: Vec<Binding<'r>>,
}

type EResult<T> = Result<T, ServerMessage>;

impl Scope<'_> {
    /// Finds (binding index, column index) for a column reference.
    pub fn resolve(&self, parts: &[String]) -> EResult<(usize, usize)> {
        let name = parts.last().map_or("", String::as_str);
        let qualifier = (parts.len() >= 2).then(|| parts[parts.len() - 2].to_lowercase());
        let mut found = None;
        for (bi, b) in self.bindings.iter().enumerate() {
            if qualifier.as_ref().is_some_and(|q| *q != b.qualifier) {
                continue;
            }
            if let Some(ci) = b
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
            {
                if found.is_some() {
                    return Err(errors::ambiguous_column(name));
                }
                found = Some((bi, ci));
            }
        }
        found.ok_or_else(|| errors::invalid_column(&parts.join(".")))
    }
}

/// True if the expression contains an aggregate.
pub fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::CountStar => true,
        Expr::Function { name, args } => is_aggregate_name(name) || args.iter().any(has_aggregate),
        Expr::Neg(x) | Expr::Not(x) => has_aggregate(x),
        Expr::Binary { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        Expr::InList { expr, list, .. } => has_aggregate(expr) || list.iter().any(has_aggregate),
        Expr::IsNull { expr, .. } => has_aggregate(expr),
        _ => false,
    }
}

fn is_aggregate_name(name: &str) -> bool {
    ["COUNT", "COUNT_BIG", "MAX", "MIN", "SUM"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(name))
}

/// Evaluates a scalar expression against one row.
pub fn eval(e: &Expr, ctx: &EvalCtx<'_>, scope: &Scope<'_>) -> EResult<Value> {
    match e {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Variable(name) => ctx
            .params
            .get(&name.to_lowercase())
            .cloned()
            .ok_or_else(|| errors::undeclared_variable(name)),
        Expr::Global(name) => global(name, ctx),
        // CURRENT_TIMESTAMP is a niladic function written without parentheses.
        Expr::Column(parts) if is_current_timestamp(parts) => {
            Ok(Value::DateTime(Timestamp::now_local()))
        }
        Expr::Column(parts) => {
            let (bi, ci) = scope.resolve(parts)?;
            Ok(scope.bindings[bi]
                .row
                .get(ci)
                .cloned()
                .unwrap_or(Value::Null))
        }
        Expr::CountStar => Err(errors::syntax_near("*")),
        Expr::Function { name, args } => {
            if is_aggregate_name(name) {
                return Err(aggregate_misuse(name));
            }
            if let Some(v) = date_part_function(name, args, ctx, scope)? {
                return Ok(v);
            }
            let vals = args
                .iter()
                .map(|a| eval(a, ctx, scope))
                .collect::<EResult<Vec<_>>>()?;
            function(name, &vals, ctx)
        }
        Expr::Neg(x) => Ok(match eval(x, ctx, scope)? {
            Value::Int(i) => Value::Int(-i),
            Value::Numeric(v, s) => Value::Numeric(-v, s),
            Value::Float(f) => Value::Float(-f),
            _ => Value::Null,
        }),
        Expr::Not(x) => Ok(truth_value(truth(&eval(x, ctx, scope)?).map(|b| !b))),
        Expr::Binary { op, left, right } => {
            let l = eval(left, ctx, scope)?;
            // AND/OR short-circuit only on definite answers (three-valued logic).
            if *op == BinOp::And && truth(&l) == Some(false) {
                return Ok(Value::Bit(false));
            }
            if *op == BinOp::Or && truth(&l) == Some(true) {
                return Ok(Value::Bit(true));
            }
            let r = eval(right, ctx, scope)?;
            binary(*op, &l, &r)
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, ctx, scope)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut unknown = false;
            for item in list {
                let c = eval(item, ctx, scope)?;
                match compare(&v, &c)? {
                    Some(Ordering::Equal) => return Ok(Value::Bit(!negated)),
                    None => unknown = true,
                    _ => {}
                }
            }
            Ok(if unknown {
                Value::Null
            } else {
                Value::Bit(*negated)
            })
        }
        Expr::IsNull { expr, negated } => {
            Ok(Value::Bit(eval(expr, ctx, scope)?.is_null() != *negated))
        }
        Expr::Subquery(sel) => {
            let set = super::query::run_select(sel, ctx)?;
            if set.rows.len() > 1 {
                return Err(ServerMessage::new(
                    512,
                    1,
                    16,
                    "Subquery returned more than 1 value. This is not permitted when the subquery follows =, !=, <, <= , >, >= or when the subquery is used as an expression.",
                ));
            }
            Ok(set
                .rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .unwrap_or(Value::Null))
        }
    }
}

fn aggregate_misuse(name: &str) -> ServerMessage {
    ServerMessage::new(
        147,
        1,
        15,
        format!(
            "An aggregate may not appear in the WHERE clause unless it is in a subquery contained in a HAVING clause or a select list, and the column being aggregated is an outer reference. ({name})"
        ),
    )
}

/// Evaluates an expression over a group of rows (the whole filtered input: no GROUP BY support).
pub fn eval_aggregate(e: &Expr, ctx: &EvalCtx<'_>, rows: &[Scope<'_>]) -> EResult<Value> {
    match e {
        Expr::CountStar => Ok(Value::Int(rows.len() as i64)),
        Expr::Function { name, args } if is_aggregate_name(name) => {
            let arg = args.first().ok_or_else(|| errors::syntax_near(")"))?;
            let vals: Vec<Value> = rows
                .iter()
                .map(|s| eval(arg, ctx, s))
                .collect::<EResult<Vec<_>>>()?
                .into_iter()
                .filter(|v| !v.is_null())
                .collect();
            let upper = name.to_ascii_uppercase();
            Ok(match upper.as_str() {
                "COUNT" | "COUNT_BIG" => Value::Int(vals.len() as i64),
                "SUM" => {
                    if vals.is_empty() {
                        Value::Null
                    } else {
                        Value::Int(vals.iter().filter_map(Value::as_i64).sum())
                    }
                }
                _ => {
                    let want = if upper == "MAX" {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                    let mut best: Option<Value> = None;
                    for v in vals {
                        best = match best {
                            None => Some(v),
                            Some(b) => Some(if compare(&v, &b)? == Some(want) { v } else { b }),
                        };
                    }
                    best.unwrap_or(Value::Null)
                }
            })
        }
        Expr::Neg(x) => eval(
            &Expr::Neg(Box::new(Expr::Literal(eval_aggregate(x, ctx, rows)?))),
            ctx,
            &Scope::default(),
        ),
        Expr::Binary { op, left, right } => {
            let l = eval_aggregate(left, ctx, rows)?;
            let r = eval_aggregate(right, ctx, rows)?;
            binary(*op, &l, &r)
        }
        Expr::Function { name, args } => {
            let vals = args
                .iter()
                .map(|a| eval_aggregate(a, ctx, rows))
                .collect::<EResult<Vec<_>>>()?;
            function(name, &vals, ctx)
        }
        Expr::Column(parts) => Err(ServerMessage::new(
            8120,
            1,
            16,
            format!(
                "Column '{}' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause.",
                parts.join(".")
            ),
        )),
        other => eval(other, ctx, &Scope::default()),
    }
}

/// SQL truth of a value: `None` is UNKNOWN.
pub fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Bit(b) => Some(*b),
        other => other.as_i64().map(|i| i != 0),
    }
}

fn truth_value(t: Option<bool>) -> Value {
    t.map_or(Value::Null, Value::Bit)
}

/// Compares two values; `Ok(None)` when either is NULL. A string compared with a number is
/// converted to a number, and a failed conversion is error 245, as in SQL Server.
pub fn compare(a: &Value, b: &Value) -> EResult<Option<Ordering>> {
    use Value::*;
    Ok(match (a, b) {
        (Null, _) | (_, Null) => None,
        (Str(x), Str(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (DateTime(x), DateTime(y)) => Some(x.cmp(y)),
        (DateTime(x), Str(s)) => {
            Some(x.cmp(&Timestamp::parse(s).ok_or_else(errors::datetime_conversion)?))
        }
        (Str(s), DateTime(y)) => Some(
            Timestamp::parse(s)
                .ok_or_else(errors::datetime_conversion)?
                .cmp(y),
        ),
        // A uniqueidentifier compared with a string converts the string (case does not matter).
        (Guid(_), _) | (_, Guid(_)) => a
            .to_text()
            .map(|t| t.to_uppercase())
            .partial_cmp(&b.to_text().map(|t| t.to_uppercase())),
        (Bytes(_), _) | (_, Bytes(_)) => a.to_text().partial_cmp(&b.to_text()),
        (Float(_), _) | (_, Float(_)) => as_f64(a)?.partial_cmp(&as_f64(b)?),
        _ => {
            let (x, xs) = as_scaled(a)?;
            let (y, ys) = as_scaled(b)?;
            let s = xs.max(ys);
            Some((x * 10i128.pow((s - xs) as u32)).cmp(&(y * 10i128.pow((s - ys) as u32))))
        }
    })
}

fn as_scaled(v: &Value) -> EResult<(i128, u8)> {
    match v {
        Value::Numeric(x, s) => Ok((*x, *s)),
        Value::Str(s) => s
            .trim()
            .parse::<i64>()
            .map(|i| (i as i128, 0))
            .map_err(|_| errors::int_conversion(s)),
        other => other
            .as_i64()
            .map(|i| (i as i128, 0))
            .ok_or_else(|| errors::int_conversion("?")),
    }
}

fn as_f64(v: &Value) -> EResult<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        other => {
            let (x, s) = as_scaled(other)?;
            Ok(x as f64 / 10f64.powi(s as i32))
        }
    }
}

fn binary(op: BinOp, l: &Value, r: &Value) -> EResult<Value> {
    let cmp = |want: &dyn Fn(Ordering) -> bool| -> EResult<Value> {
        Ok(truth_value(compare(l, r)?.map(want)))
    };
    match op {
        BinOp::Or => Ok(match (truth(l), truth(r)) {
            (Some(true), _) | (_, Some(true)) => Value::Bit(true),
            (Some(false), Some(false)) => Value::Bit(false),
            _ => Value::Null,
        }),
        BinOp::And => Ok(match (truth(l), truth(r)) {
            (Some(false), _) | (_, Some(false)) => Value::Bit(false),
            (Some(true), Some(true)) => Value::Bit(true),
            _ => Value::Null,
        }),
        BinOp::Eq => cmp(&|o| o == Ordering::Equal),
        BinOp::Ne => cmp(&|o| o != Ordering::Equal),
        BinOp::Lt => cmp(&|o| o == Ordering::Less),
        BinOp::Le => cmp(&|o| o != Ordering::Greater),
        BinOp::Gt => cmp(&|o| o == Ordering::Greater),
        BinOp::Ge => cmp(&|o| o != Ordering::Less),
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => arithmetic(op, l, r),
    }
}

fn arithmetic(op: BinOp, l: &Value, r: &Value) -> EResult<Value> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    // String + string concatenates.
    if op == BinOp::Add
        && let (Value::Str(a), Value::Str(b)) = (l, r)
    {
        return Ok(Value::Str(format!("{a}{b}")));
    }
    if matches!(l, Value::Float(_)) || matches!(r, Value::Float(_)) {
        let (a, b) = (as_f64(l)?, as_f64(r)?);
        return Ok(Value::Float(match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => return Err(errors::divide_by_zero()),
            BinOp::Div => a / b,
            _ => a % b,
        }));
    }
    let (a, b) = (as_scaled(l)?.0, as_scaled(r)?.0);
    let v = match op {
        BinOp::Add => a.checked_add(b),
        BinOp::Sub => a.checked_sub(b),
        BinOp::Mul => a.checked_mul(b),
        BinOp::Div | BinOp::Mod if b == 0 => return Err(errors::divide_by_zero()),
        BinOp::Div => a.checked_div(b),
        _ => a.checked_rem(b),
    };
    Ok(v.and_then(|v| i64::try_from(v).ok())
        .map_or(Value::Null, Value::Int))
}

fn global(name: &str, ctx: &EvalCtx<'_>) -> EResult<Value> {
    let s: &SessionInfo = ctx.session;
    Ok(match name.to_ascii_uppercase().as_str() {
        "@@VERSION" => Value::Str(ctx.state.version_text()),
        // A renamed / rebuilt host whose sys.servers entry was never fixed keeps the old name
        // here, while SERVERPROPERTY('ServerName') reports the real one.
        "@@SERVERNAME" => Value::Str(ctx.state.at_at_servername().to_string()),
        "@@SERVICENAME" => Value::Str(service_name(&ctx.state.server_name)),
        "@@SPID" => Value::Int(s.spid as i64),
        "@@TRANCOUNT" => Value::Int(s.tran_count as i64),
        "@@ERROR" => ctx.params.get("@@error").cloned().unwrap_or(Value::Int(0)),
        "@@ROWCOUNT" => Value::Int(0),
        "@@LANGUAGE" => Value::Str("us_english".into()),
        _ => return Err(errors::syntax_near(name)),
    })
}

/// The instance part of a server name (`MSSQLSERVER` for a default instance).
pub fn service_name(server_name: &str) -> String {
    server_name
        .split_once('\\')
        .map_or("MSSQLSERVER".to_string(), |(_, i)| i.to_string())
}

fn function(name: &str, args: &[Value], ctx: &EvalCtx<'_>) -> EResult<Value> {
    let arg_text = |i: usize| args.get(i).and_then(Value::to_text);
    let upper = name.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "SERVERPROPERTY" => server_property(&arg_text(0).unwrap_or_default(), ctx),
        "DB_ID" => {
            let db = match arg_text(0) {
                Some(n) => ctx.state.database(&n),
                None => ctx.state.database(&ctx.session.database),
            };
            db.map_or(Value::Null, |d| Value::Int(d.database_id as i64))
        }
        "DB_NAME" => {
            let db = match args.first().and_then(Value::as_i64) {
                Some(id) => ctx
                    .state
                    .databases
                    .iter()
                    .find(|d| d.database_id as i64 == id),
                None if args.is_empty() => ctx.state.database(&ctx.session.database),
                None => None,
            };
            db.map_or(Value::Null, |d| Value::Str(d.name.clone()))
        }
        // GETDATE, SYSDATETIME and CURRENT_TIMESTAMP are the host's local time; the UTC pair is
        // the same instant without the offset (sql-docs GETDATE / GETUTCDATE).
        "GETDATE" | "SYSDATETIME" | "CURRENT_TIMESTAMP" => Value::DateTime(Timestamp::now_local()),
        "GETUTCDATE" | "SYSUTCDATETIME" => Value::DateTime(Timestamp::now()),
        // The sim's wire types have no datetimeoffset; SYSDATETIMEOFFSET() is answered only
        // inside DATEPART(TZOFFSET, …) (see `date_part_function`). Anything else is refused
        // rather than answered with a different type.
        "SYSDATETIMEOFFSET" => {
            return Err(ServerMessage::new(
                50000,
                1,
                16,
                "sqlsim: SYSDATETIMEOFFSET() is supported only as DATEPART(TZOFFSET, SYSDATETIMEOFFSET())",
            ));
        }
        "SUSER_SNAME" | "SUSER_NAME" | "ORIGINAL_LOGIN" => Value::Str(ctx.session.login.clone()),
        "HOST_NAME" => Value::Str(ctx.session.host_name.clone()),
        "APP_NAME" => Value::Str(ctx.session.program_name.clone()),
        "ISNULL" | "COALESCE" => args
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null),
        "UPPER" => arg_text(0).map_or(Value::Null, |s| Value::Str(s.to_uppercase())),
        "LOWER" => arg_text(0).map_or(Value::Null, |s| Value::Str(s.to_lowercase())),
        "LEN" => arg_text(0).map_or(Value::Null, |s| {
            Value::Int(s.trim_end().chars().count() as i64)
        }),
        _ => return Err(errors::unknown_function(name)),
    })
}

/// `CURRENT_TIMESTAMP`, which the parser sees as a column name.
pub fn is_current_timestamp(parts: &[String]) -> bool {
    matches!(parts, [p] if p.eq_ignore_ascii_case("CURRENT_TIMESTAMP"))
}

/// How many leading arguments of `name` are keywords, not expressions (DATEDIFF's and
/// DATEPART's datepart), so column checks skip them.
pub fn keyword_args(name: &str) -> usize {
    usize::from(name.eq_ignore_ascii_case("DATEDIFF") || name.eq_ignore_ascii_case("DATEPART"))
}

/// The datepart keyword of DATEDIFF/DATEPART (`minute`, `mi`, `n`, …), lower-cased.
fn datepart_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(parts) if parts.len() == 1 => Some(parts[0].to_ascii_lowercase()),
        _ => None,
    }
}

/// 100 ns ticks since 0001-01-01.
fn total_ticks(t: &Timestamp) -> i128 {
    t.days as i128 * crate::sqlsim::clock::TICKS_PER_DAY as i128 + t.ticks as i128
}

/// DATEDIFF and DATEPART, whose first argument is a keyword, not an expression. DATEDIFF counts
/// the datepart boundaries crossed from the start date to the end date (so
/// `DATEDIFF(minute, '12:00:59', '12:01:00')` is 1), as sql-docs describes. `None`: another
/// function.
fn date_part_function(
    name: &str,
    args: &[Expr],
    ctx: &EvalCtx<'_>,
    scope: &Scope<'_>,
) -> EResult<Option<Value>> {
    let upper = name.to_ascii_uppercase();
    if upper != "DATEDIFF" && upper != "DATEPART" {
        return Ok(None);
    }
    let part = args.first().and_then(datepart_name).unwrap_or_default();
    let unknown = || {
        ServerMessage::new(
            155,
            15,
            16,
            format!(
                "'{part}' is not a recognized {} option.",
                upper.to_lowercase()
            ),
        )
    };
    let date = |e: Option<&Expr>| -> EResult<Option<Timestamp>> {
        match e.map(|e| eval(e, ctx, scope)).transpose()? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::DateTime(t)) => Ok(Some(t)),
            Some(Value::Str(s)) => Timestamp::parse(&s)
                .map(Some)
                .ok_or_else(errors::datetime_conversion),
            Some(_) => Err(errors::datetime_conversion()),
        }
    };
    if upper == "DATEPART" {
        if part == "tzoffset" || part == "tz" {
            // The offset SYSDATETIMEOFFSET() carries; a value without one (datetime, datetime2)
            // has offset 0.
            let own = matches!(args.get(1), Some(Expr::Function { name, .. })
                if name.eq_ignore_ascii_case("SYSDATETIMEOFFSET"));
            return Ok(Some(Value::Int(if own {
                i64::from(crate::sqlsim::clock::utc_offset_minutes())
            } else {
                0
            })));
        }
        let Some(t) = date(args.get(1))? else {
            return Ok(Some(Value::Null));
        };
        let (y, m, d) = t.civil_date();
        let s = t.second_of_day() as i64;
        return Ok(Some(Value::Int(match part.as_str() {
            "year" | "yy" | "yyyy" => y,
            "month" | "mm" | "m" => m as i64,
            "day" | "dd" | "d" => d as i64,
            "hour" | "hh" => s / 3600,
            "minute" | "mi" | "n" => s / 60 % 60,
            "second" | "ss" | "s" => s % 60,
            _ => return Err(unknown()),
        })));
    }
    let (Some(a), Some(b)) = (date(args.get(1))?, date(args.get(2))?) else {
        return Ok(Some(Value::Null));
    };
    let unit: i128 = match part.as_str() {
        "day" | "dd" | "d" => 864_000_000_000,
        "hour" | "hh" => 36_000_000_000,
        "minute" | "mi" | "n" => 600_000_000,
        "second" | "ss" | "s" => 10_000_000,
        "millisecond" | "ms" => 10_000,
        "year" | "yy" | "yyyy" | "month" | "mm" | "m" => {
            let (ya, ma, _) = a.civil_date();
            let (yb, mb, _) = b.civil_date();
            let months = (yb - ya) * 12 + mb as i64 - ma as i64;
            return Ok(Some(Value::Int(if part.starts_with('y') {
                yb - ya
            } else {
                months
            })));
        }
        _ => return Err(unknown()),
    };
    let diff = total_ticks(&b).div_euclid(unit) - total_ticks(&a).div_euclid(unit);
    Ok(Some(Value::Int(diff as i64)))
}

fn server_property(prop: &str, ctx: &EvalCtx<'_>) -> Value {
    let st = ctx.state;
    let text = |s: &str| Value::Str(s.to_string());
    match prop.to_ascii_lowercase().as_str() {
        "productversion" => text(&st.product_version),
        "productlevel" => text(&st.product_level),
        "productmajorversion" => text(&st.version_triplet().0.to_string()),
        "edition" => text(&st.edition),
        "engineedition" => text("2"),
        "servername" => text(&st.server_name),
        "machinename" => text(st.server_name.split('\\').next().unwrap_or_default()),
        "instancename" => match st.server_name.split_once('\\') {
            Some((_, i)) => text(i),
            None => Value::Null,
        },
        "instancedefaultdatapath" => text(&st.default_data_path),
        "instancedefaultlogpath" => text(&st.default_log_path),
        "collation" => text("SQL_Latin1_General_CP1_CI_AS"),
        "isclustered" | "ishadrenabled" | "isintegratedsecurityonly" => text("0"),
        _ => Value::Null,
    }
}

/// Result type of an expression, given the columns in scope.
pub fn infer_type(e: &Expr, ctx: &EvalCtx<'_>, scope: &Scope<'_>) -> SqlType {
    match e {
        Expr::Literal(v) => value_type(v),
        Expr::Variable(n) => ctx
            .params
            .get(&n.to_lowercase())
            .map_or(SqlType::Int, value_type),
        Expr::Global(g) => match g.to_ascii_uppercase().as_str() {
            "@@VERSION" => SqlType::NVarChar(Some(300)),
            "@@SPID" => SqlType::SmallInt,
            "@@TRANCOUNT" | "@@ERROR" | "@@ROWCOUNT" => SqlType::Int,
            _ => SqlType::NVarChar(Some(128)),
        },
        Expr::Column(parts) if is_current_timestamp(parts) => SqlType::DateTime,
        Expr::Column(parts) => scope
            .resolve(parts)
            .map(|(bi, ci)| scope.bindings[bi].columns[ci].ty)
            .unwrap_or(SqlType::Int),
        Expr::CountStar => SqlType::Int,
        Expr::Function { name, args } => match name.to_ascii_uppercase().as_str() {
            "COUNT" | "DB_ID" | "LEN" | "DATEDIFF" | "DATEPART" => SqlType::Int,
            "COUNT_BIG" | "SUM" => SqlType::BigInt,
            "MAX" | "MIN" | "ISNULL" | "COALESCE" | "UPPER" | "LOWER" => args
                .first()
                .map_or(SqlType::Int, |a| infer_type(a, ctx, scope)),
            "SERVERPROPERTY" => SqlType::NVarChar(Some(4000)),
            "GETDATE" | "GETUTCDATE" | "CURRENT_TIMESTAMP" => SqlType::DateTime,
            "SYSDATETIME" | "SYSUTCDATETIME" => SqlType::DateTime2(7),
            _ => SqlType::NVarChar(Some(128)),
        },
        Expr::Neg(x) => infer_type(x, ctx, scope),
        Expr::Binary {
            op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod,
            left,
            right,
        } => match (infer_type(left, ctx, scope), infer_type(right, ctx, scope)) {
            (SqlType::NVarChar(_), _) | (_, SqlType::NVarChar(_)) => SqlType::NVarChar(Some(4000)),
            (SqlType::Float | SqlType::Real, _) | (_, SqlType::Float | SqlType::Real) => {
                SqlType::Float
            }
            (SqlType::BigInt, _) | (_, SqlType::BigInt) => SqlType::BigInt,
            _ => SqlType::Int,
        },
        _ => SqlType::Bit,
    }
}

/// The column type that carries a value of this kind.
pub fn value_type(v: &Value) -> SqlType {
    match v {
        Value::Null | Value::Int(_) => match v.as_i64() {
            Some(i) if i32::try_from(i).is_err() => SqlType::BigInt,
            _ => SqlType::Int,
        },
        Value::Bit(_) => SqlType::Bit,
        Value::Float(_) => SqlType::Float,
        Value::Str(s) => {
            let n = s.encode_utf16().count();
            if n > 4000 {
                SqlType::NVarChar(None)
            } else {
                SqlType::NVarChar(Some(n.max(1) as u16))
            }
        }
        Value::Bytes(b) => {
            if b.len() > 8000 {
                SqlType::VarBinary(None)
            } else {
                SqlType::VarBinary(Some(b.len().max(1) as u16))
            }
        }
        Value::DateTime(_) => SqlType::DateTime2(7),
        Value::Numeric(_, s) => SqlType::Numeric(38, *s),
        Value::Guid(_) => SqlType::UniqueIdentifier,
    }
}
