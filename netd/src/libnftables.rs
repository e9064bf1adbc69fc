//! The FFI edge to libnftables (Debian's libnftables1; building needs libnftables-dev): the
//! library `nft` itself is a thin front end to. Running it in process instead of spawning
//! `nft -j -f -` takes a rule set change from ~10 ms (process start, dynamic linking, context
//! set-up) to well under a millisecond, with the same parser, the same JSON input and the
//! same one-transaction semantics. This is the only `unsafe` in netd.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};

#[derive(Debug, thiserror::Error)]
pub enum LibnftError {
    #[error("libnftables: cannot make a context")]
    Context,
    #[error("libnftables: the command holds a NUL byte")]
    Nul,
    #[error("{0}")]
    Failed(String),
}

/// `struct nft_ctx` is opaque.
#[repr(C)]
struct NftCtx {
    _private: [u8; 0],
}

const NFT_CTX_DEFAULT: u32 = 0;
/// JSON output; libnftables 1.0.6 also reads its input as JSON when this is set (later
/// versions have an input flag as well, and keep honouring this one).
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

#[link(name = "nftables")]
extern "C" {
    fn nft_ctx_new(flags: u32) -> *mut NftCtx;
    fn nft_ctx_free(ctx: *mut NftCtx);
    fn nft_ctx_output_set_flags(ctx: *mut NftCtx, flags: c_uint);
    fn nft_ctx_buffer_output(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_buffer_error(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_get_output_buffer(ctx: *mut NftCtx) -> *const c_char;
    fn nft_ctx_get_error_buffer(ctx: *mut NftCtx) -> *const c_char;
    fn nft_run_cmd_from_buffer(ctx: *mut NftCtx, buf: *const c_char) -> c_int;
}

/// One libnftables context: its own netlink socket (in the namespace of the thread that made
/// it) and rule set cache. Not shareable between threads at once, hence `&mut self`.
pub struct Context {
    ctx: *mut NftCtx,
}

// SAFETY: a context is plain heap state owned by this value; libnftables keeps no
// thread-local state, and `&mut self` on every call means one thread uses it at a time.
unsafe impl Send for Context {}

impl Context {
    /// A context that reads JSON commands and keeps output and errors in buffers.
    pub fn new() -> Result<Context, LibnftError> {
        // SAFETY: nft_ctx_new has no preconditions; it returns NULL on failure.
        let ctx = unsafe { nft_ctx_new(NFT_CTX_DEFAULT) };
        if ctx.is_null() {
            return Err(LibnftError::Context);
        }
        // SAFETY: ctx is a live context from nft_ctx_new, freed only in Drop.
        unsafe {
            nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
            if nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0 {
                nft_ctx_free(ctx);
                return Err(LibnftError::Context);
            }
        }
        Ok(Context { ctx })
    }

    /// Runs a JSON document of commands (`{"nftables": [...]}`) as one transaction and returns
    /// what it printed (JSON, for list commands).
    pub fn run(&mut self, json: &str) -> Result<String, LibnftError> {
        let cmd = CString::new(json).map_err(|_| LibnftError::Nul)?;
        // SAFETY: ctx is live; cmd is a NUL-terminated string that outlives the call.
        let rc = unsafe { nft_run_cmd_from_buffer(self.ctx, cmd.as_ptr()) };
        // Reading a buffer also rewinds it, so both are read after every command.
        // SAFETY: the getters return a NUL-terminated string owned by the context, valid until
        // its next call; it is copied at once.
        let (out, err) = unsafe {
            (
                buffer(nft_ctx_get_output_buffer(self.ctx)),
                buffer(nft_ctx_get_error_buffer(self.ctx)),
            )
        };
        if rc != 0 {
            let err = err.trim();
            return Err(LibnftError::Failed(if err.is_empty() {
                format!("nftables command failed ({rc})")
            } else {
                err.to_string()
            }));
        }
        Ok(out)
    }
}

/// Copies a C string from libnftables (NULL reads as empty).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the duration of the call.
unsafe fn buffer(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed exactly once, here.
        unsafe { nft_ctx_free(self.ctx) }
    }
}
