//! Procedural macros re-exported by the `multiproc` facade. Use them through `multiproc`.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// Make `fn main` multiproc-aware: `multiproc::init()` becomes its first statement, so a child
/// process started with `spawn` runs its task instead of `main`, and nothing before `init`
/// ever runs twice.
///
/// ```ignore
/// #[multiproc::main]
/// fn main() {
///     // only the parent gets here
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[multiproc::main] takes no arguments");
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let is_fn = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "fn"));
    match tokens.last_mut() {
        Some(TokenTree::Group(body)) if is_fn && body.delimiter() == Delimiter::Brace => {
            let init: TokenStream = "::multiproc::init();".parse().expect("static tokens parse");
            let mut inner = init;
            inner.extend(body.stream());
            let mut g = Group::new(Delimiter::Brace, inner);
            g.set_span(body.span());
            *body = g;
            tokens.into_iter().collect()
        }
        _ => compile_error("#[multiproc::main] goes on `fn main() { ... }`"),
    }
}

fn compile_error(msg: &str) -> TokenStream {
    format!("compile_error!({msg:?});")
        .parse()
        .expect("static tokens parse")
}
