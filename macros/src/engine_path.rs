//! How generated code names the engine crate.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;

/// The path to `tidings-engine`'s root as the crate being compiled can reach it.
///
/// The facade comes first because an application depending on `tidings` is the common
/// case and `tidings::engine` is the path its documentation shows. When nothing is found
/// (Cargo.toml unreadable, or neither crate declared) the facade path is the best guess:
/// the resulting "unresolved `tidings`" error tells the user what to add.
pub(crate) fn engine_path() -> syn::Result<TokenStream> {
    if let Ok(found) = crate_name("tidings") {
        return Ok(match resolve(found, "tidings")? {
            Some(root) => quote!(::#root::engine),
            None => quote!(crate::engine),
        });
    }
    if let Ok(found) = crate_name("tidings-engine") {
        return Ok(match resolve(found, "tidings-engine")? {
            Some(root) => quote!(::#root),
            None => quote!(crate),
        });
    }
    Ok(quote!(::tidings::engine))
}

/// The extern crate name to use, or `None` when the macro expands inside `package`'s own
/// library (where only `crate` reaches it).
fn resolve(found: FoundCrate, package: &str) -> syn::Result<Option<syn::Ident>> {
    let name = match found {
        FoundCrate::Name(name) => name,
        // proc-macro-crate says `Itself` for every target of the package except
        // integration tests; examples and binaries are separate crates that link the
        // library, so they must name it like any dependent.
        FoundCrate::Itself if compiling_library_of(package) => return Ok(None),
        FoundCrate::Itself => package.replace('-', "_"),
    };
    // Cargo only hands out identifier-shaped names, but a malformed one should give a
    // compile error at the use site rather than a panic in the macro.
    syn::parse_str::<syn::Ident>(&name).map(Some).map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            format!("cannot name the crate `{name}` in generated code"),
        )
    })
}

/// Whether the crate being compiled is `package`'s library (not an example, binary or
/// doctest).
fn compiling_library_of(package: &str) -> bool {
    // Doctests see the library's CARGO_CRATE_NAME but are separate crates that link it;
    // rustdoc marks their compilation with this variable (unstable in name, so at worst
    // a doctest falls back to `crate::` as before).
    if std::env::var_os("UNSTABLE_RUSTDOC_TEST_PATH").is_some() {
        return false;
    }
    match std::env::var("CARGO_CRATE_NAME") {
        Ok(crate_name) => crate_name == package.replace('-', "_"),
        // Without Cargo's variable, trust proc-macro-crate's answer.
        Err(_) => true,
    }
}
