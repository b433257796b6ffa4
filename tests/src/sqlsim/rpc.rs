//! RPC requests (MS-TDS 2.2.6.6) and the ALL_HEADERS prefix shared by SQL batches, RPCs and
//! Transaction Manager requests. An RPC names its procedure by well-known id (tiberius and pytds
//! send ProcID 10 = sp_executesql) or by name; parameters are `B_VARCHAR name, status, TYPE_INFO,
//! value`. pytds leaves the first two parameter names empty and tiberius names them `stmt` and
//! `params`, so sp_executesql binds its statement and declaration by position.

use super::error::{Result, SimError};
use super::types::{Value, read_param};
use super::wire::Reader;

/// Well-known procedure ids (MS-TDS 2.2.6.6 ProcIDSwitch).
const PROC_NAMES: [&str; 16] = [
    "",
    "sp_cursor",
    "sp_cursoropen",
    "sp_cursorprepare",
    "sp_cursorexecute",
    "sp_cursorprepexec",
    "sp_cursorunprepare",
    "sp_cursorfetch",
    "sp_cursoroption",
    "sp_cursorclose",
    "sp_executesql",
    "sp_prepare",
    "sp_execute",
    "sp_prepexec",
    "sp_prepexecrpc",
    "sp_unprepare",
];

/// ProcID of sp_executesql.
pub const SP_EXECUTESQL: u16 = 10;

/// The procedure an RPC calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcRef {
    /// By well-known id.
    Id(u16),
    /// By name, as sent (may be qualified, e.g. `sys.sp_executesql`).
    Name(String),
}

impl ProcRef {
    /// The procedure name, for messages.
    pub fn name(&self) -> String {
        match self {
            ProcRef::Id(id) => PROC_NAMES
                .get(*id as usize)
                .map_or_else(|| format!("#{id}"), |n| n.to_string()),
            ProcRef::Name(n) => n.clone(),
        }
    }

    /// True when this is sp_executesql (by id, or by a name whose last part is sp_executesql).
    pub fn is_sp_executesql(&self) -> bool {
        match self {
            ProcRef::Id(id) => *id == SP_EXECUTESQL,
            ProcRef::Name(n) => n.rsplit('.').next().is_some_and(|last| {
                last.trim_matches(['[', ']'])
                    .eq_ignore_ascii_case("sp_executesql")
            }),
        }
    }
}

/// One parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcParam {
    /// Name including `@`, or empty.
    pub name: String,
    /// Status flags (0x01 = by reference / OUTPUT).
    pub status: u8,
    /// Value.
    pub value: Value,
}

/// One procedure call of an RPC request.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcCall {
    /// The procedure.
    pub proc_ref: ProcRef,
    /// Parameters in order.
    pub params: Vec<RpcParam>,
}

/// Returns the payload after ALL_HEADERS when the client sends them (TDS 7.2 and later).
pub fn strip_all_headers(payload: &[u8], has_headers: bool) -> Result<&[u8]> {
    if !has_headers {
        return Ok(payload);
    }
    let mut r = Reader::new(payload);
    let total = r.u32_le()? as usize;
    if total < 4 || total > payload.len() {
        return Err(SimError::protocol(format!(
            "ALL_HEADERS length {total} out of range"
        )));
    }
    Ok(&payload[total..])
}

/// Parses an RPC request body (after ALL_HEADERS); several calls may be batched in one request.
pub fn parse(body: &[u8]) -> Result<Vec<RpcCall>> {
    let mut r = Reader::new(body);
    let mut calls = Vec::new();
    loop {
        let name_len = r.u16_le()?;
        let proc_ref = if name_len == 0xFFFF {
            ProcRef::Id(r.u16_le()?)
        } else {
            ProcRef::Name(r.utf16(name_len as usize)?)
        };
        let _option_flags = r.u16_le()?;
        let mut params = Vec::new();
        loop {
            match r.peek_u8() {
                None => {
                    calls.push(RpcCall { proc_ref, params });
                    return Ok(calls);
                }
                // Batch separators between calls: 0xFF (7.2+) or 0x80.
                Some(0xFF | 0x80) => {
                    r.skip(1)?;
                    break;
                }
                Some(_) => {
                    let name = r.b_varchar()?;
                    let status = r.u8()?;
                    let value = read_param(&mut r)?;
                    params.push(RpcParam {
                        name,
                        status,
                        value,
                    });
                }
            }
        }
        calls.push(RpcCall { proc_ref, params });
        if r.remaining() == 0 {
            return Ok(calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlsim::types::{SqlType, write_type_info, write_value};
    use crate::sqlsim::wire::put_b_varchar;

    fn param(out: &mut Vec<u8>, name: &str, ty: SqlType, v: Value) {
        put_b_varchar(out, name);
        out.push(0);
        write_type_info(out, ty);
        write_value(out, ty, &v);
    }

    #[test]
    fn parses_sp_executesql_by_id_like_tiberius() {
        let mut b = vec![0xFF, 0xFF, 10, 0, 0, 0];
        param(
            &mut b,
            "stmt",
            SqlType::NVarChar(Some(4000)),
            Value::Str("select @P1".into()),
        );
        param(
            &mut b,
            "params",
            SqlType::NVarChar(Some(4000)),
            Value::Str("@P1 int".into()),
        );
        param(&mut b, "@P1", SqlType::Int, Value::Int(7));
        let calls = parse(&b).unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].proc_ref.is_sp_executesql());
        assert_eq!(calls[0].params[2].value, Value::Int(7));
    }

    #[test]
    fn truncated_rpc_is_a_protocol_error() {
        let mut b = vec![0xFF, 0xFF, 10, 0, 0, 0];
        param(
            &mut b,
            "stmt",
            SqlType::NVarChar(Some(4000)),
            Value::Str("select 1".into()),
        );
        b.truncate(b.len() - 3);
        assert!(parse(&b).is_err());
        assert!(strip_all_headers(&[0xFF, 0xFF, 0, 0], true).is_err());
    }

    #[test]
    fn by_name() {
        let mut b = Vec::new();
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend(crate::sqlsim::wire::utf16_bytes("sp_x"));
        b.extend_from_slice(&[0, 0]);
        let calls = parse(&b).unwrap();
        assert_eq!(calls[0].proc_ref, ProcRef::Name("sp_x".into()));
        assert!(ProcRef::Name("sys.sp_executesql".into()).is_sp_executesql());
    }
}
