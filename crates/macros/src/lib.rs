//! Procedural macros re-exported by the `multiproc` facade. Use them through `multiproc`.
//!
//! Written on `proc_macro` alone (no `syn`), so the attribute costs a user's build next to
//! nothing: it only has to find `fn main`'s parts, check them, and prepend one call.

#![warn(missing_debug_implementations)]

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Make `fn main` multiproc-aware: `multiproc::init()` becomes its first statement, so a child
/// process started with `spawn` runs its task instead of `main`, and nothing before `init`
/// ever runs twice.
///
/// ```
/// #[multiproc::main]
/// fn main() {
///     // only the parent gets here
/// }
/// ```
///
/// `main` may return a `Result` as usual. It may not be `async`, take arguments or have
/// generics; an async runtime's own attribute, written *above* this one, turns an `async fn
/// main` into a plain one first (`#[tokio::main] #[multiproc::main] async fn main()`).
///
/// # A renamed dependency
///
/// The call it inserts names the facade as `::multiproc`. If `Cargo.toml` renames the
/// dependency (`mp = { package = "multiproc", ... }`), say so with `crate`, as with serde's
/// `#[serde(crate = "...")]`:
///
/// ```
/// # extern crate multiproc as mp;
/// #[mp::main(crate = "mp")]
/// fn main() {}
/// ```
///
/// Any other argument, or the attribute on anything but `fn main`, is a compile error that
/// says what is wrong; the item is never dropped.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item.clone()) {
        Ok(out) => out,
        Err((span, msg)) => {
            // The item as written follows the error, so rustc reports only our error (not a
            // missing `main` or errors from the item's uses).
            let mut out = compile_error(span, &msg);
            out.extend(item);
            out
        }
    }
}

type Failure = (Span, String);

fn expand(attr: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let krate = crate_path(attr)?;
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let body_at = check_main(&tokens)?;
    let TokenTree::Group(body) = &tokens[body_at] else {
        unreachable!("check_main returns the index of the brace group");
    };
    let mut inner: Vec<TokenTree> = body.stream().into_iter().collect();
    // Inner attributes (`#![allow(...)]`) must stay first in the block.
    let mut at = 0;
    while let [TokenTree::Punct(h), TokenTree::Punct(b), TokenTree::Group(g), ..] = &inner[at..] {
        if h.as_char() == '#' && b.as_char() == '!' && g.delimiter() == Delimiter::Bracket {
            at += 3;
        } else {
            break;
        }
    }
    let mut call = krate;
    call.extend(
        "::init();"
            .parse::<TokenStream>()
            .expect("static tokens parse"),
    );
    let rest = inner.split_off(at);
    let mut stream: TokenStream = inner.into_iter().collect();
    stream.extend(call);
    stream.extend(rest);
    let mut g = Group::new(Delimiter::Brace, stream);
    g.set_span(body.span());
    tokens[body_at] = TokenTree::Group(g);
    Ok(tokens.into_iter().collect())
}

/// The facade's path: `::multiproc`, or the `crate = "..."` argument parsed as a path.
fn crate_path(attr: TokenStream) -> Result<TokenStream, Failure> {
    let args: Vec<TokenTree> = attr.into_iter().collect();
    let usage = "#[multiproc::main] takes no arguments but `crate = \"name\"` \
                 (the name `Cargo.toml` gives the multiproc dependency)";
    match args.as_slice() {
        [] => Ok("::multiproc".parse().expect("static tokens parse")),
        [TokenTree::Ident(k), TokenTree::Punct(eq), TokenTree::Literal(lit)]
            if k.to_string() == "crate" && eq.as_char() == '=' =>
        {
            let text = lit.to_string();
            let path = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|p| is_path(p))
                .ok_or_else(|| {
                    (
                        lit.span(),
                        format!("`crate` wants a path in a string, such as \"mp\"; got {text}"),
                    )
                })?;
            let parsed: TokenStream = path
                .parse()
                .map_err(|_| (lit.span(), format!("`crate = {text}` is not a path")))?;
            // Resolve the user's name where the user wrote it.
            Ok(parsed
                .into_iter()
                .map(|mut t| {
                    t.set_span(lit.span());
                    t
                })
                .collect())
        }
        [TokenTree::Ident(k), TokenTree::Punct(eq), value, ..]
            if k.to_string() == "crate" && eq.as_char() == '=' =>
        {
            Err((
                value.span(),
                "`crate` wants a path in a string, such as `crate = \"mp\"`".to_string(),
            ))
        }
        [first, ..] => Err((first.span(), usage.to_string())),
    }
}

/// `a`, `::a`, `a::b`, `self::a`, `crate::a::b`: identifiers joined by `::`.
fn is_path(p: &str) -> bool {
    let p = p.strip_prefix("::").unwrap_or(p);
    !p.is_empty()
        && p.split("::").all(|seg| {
            let mut cs = seg.chars();
            cs.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && cs.all(|c| c.is_alphanumeric() || c == '_')
                && seg != "_"
        })
}

/// Check that `tokens` are `fn main() [-> T] { ... }` (with attributes, visibility and no
/// qualifier rustc would reject anyway); return the index of the body.
fn check_main(tokens: &[TokenTree]) -> Result<usize, Failure> {
    let not_fn = |span: Span| {
        (
            span,
            "#[multiproc::main] goes on `fn main() { ... }`, not on this item".to_string(),
        )
    };
    let mut i = 0;
    // Outer attributes: `#[...]`.
    while let [TokenTree::Punct(p), TokenTree::Group(g), ..] = &tokens[i..] {
        if p.as_char() == '#' && g.delimiter() == Delimiter::Bracket {
            i += 2;
        } else {
            break;
        }
    }
    // Visibility: `pub`, `pub(...)`.
    if let Some(TokenTree::Ident(id)) = tokens.get(i) {
        if id.to_string() == "pub" {
            i += 1;
            if let Some(TokenTree::Group(g)) = tokens.get(i) {
                if g.delimiter() == Delimiter::Parenthesis {
                    i += 1;
                }
            }
        }
    }
    // Qualifiers up to `fn`.
    loop {
        match tokens.get(i) {
            Some(TokenTree::Ident(id)) if id.to_string() == "fn" => break,
            Some(TokenTree::Ident(id)) if id.to_string() == "async" => {
                return Err((
                    id.span(),
                    "#[multiproc::main] cannot go on an `async fn`: multiproc::init() must run \
                     before any runtime starts. Write the runtime's attribute above it \
                     (`#[tokio::main] #[multiproc::main] async fn main()`), which makes `main` \
                     a plain fn first"
                        .to_string(),
                ));
            }
            Some(TokenTree::Ident(id))
                if matches!(id.to_string().as_str(), "const" | "unsafe" | "extern") =>
            {
                i += 1;
            }
            Some(TokenTree::Literal(_)) => i += 1, // the ABI string of `extern "C"`
            Some(t) => return Err(not_fn(t.span())),
            None => return Err(not_fn(Span::call_site())),
        }
    }
    let fn_span = tokens[i].span();
    i += 1;
    match tokens.get(i) {
        Some(TokenTree::Ident(name)) if name.to_string() == "main" => {}
        Some(t @ TokenTree::Ident(name)) => {
            return Err((
                t.span(),
                format!(
                    "#[multiproc::main] goes on `fn main`, not on `fn {name}`: it makes \
                     multiproc::init() the first thing the program runs"
                ),
            ))
        }
        _ => return Err(not_fn(fn_span)),
    }
    i += 1;
    match tokens.get(i) {
        Some(TokenTree::Punct(p)) if p.as_char() == '<' => {
            return Err((
                p.span(),
                "`main` cannot have generic parameters".to_string(),
            ))
        }
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
            if !g.stream().is_empty() {
                return Err((
                    g.span(),
                    "`main` takes no arguments; read them with std::env::args()".to_string(),
                ));
            }
        }
        _ => return Err(not_fn(fn_span)),
    }
    // The return type and where clause run up to the body, the last brace group.
    match tokens.last() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace && tokens.len() > i + 1 => {
            Ok(tokens.len() - 1)
        }
        _ => Err((
            fn_span,
            "#[multiproc::main] needs the body of `fn main`: `fn main() { ... }`".to_string(),
        )),
    }
}

/// `compile_error!("msg")`, pointing at `span`.
fn compile_error(span: Span, msg: &str) -> TokenStream {
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut lit = Literal::string(msg);
    lit.set_span(span);
    let mut args = Group::new(Delimiter::Parenthesis, TokenTree::Literal(lit).into());
    args.set_span(span);
    let mut semi = Punct::new(';', Spacing::Alone);
    semi.set_span(span);
    [
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(bang),
        TokenTree::Group(args),
        TokenTree::Punct(semi),
    ]
    .into_iter()
    .collect()
}
