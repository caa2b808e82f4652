//! Procedural macros for tidings.
//!
//! - `#[table(...)]` turns a struct with named fields into a table: it implements the
//!   engine's `TableType` (schema, row conversion), `HasCols` (typed column handles in a
//!   generated `{Struct}Cols` struct) and, for non-event tables, `CanBeLookupTable`.
//! - `#[derive(SqlEnum)]` stores a C-like enum as a `u8` tag column.
//!
//! Generated code names the engine by the path the user's crate can reach (see
//! `engine_path`), so it works through the `tidings` facade, through `tidings-engine`
//! directly, and inside `tidings-engine` itself.

use proc_macro::TokenStream;

mod engine_path;
mod sql_enum;
mod table;

/// Declares a table from a struct with named fields; see the crate docs for the options.
///
/// ```text
/// #[table(name = "message", public)]
/// struct Message {
///     #[primary_key]
///     #[auto_inc]
///     id: u64,
///     #[index(btree)]
///     sender: Identity,
///     text: String,
/// }
/// ```
///
/// Table options: `name = "..."` (required), `public` or `private` (the default),
/// `event`, and any number of `index(name = "...", btree(columns = [a, b]))` for
/// multi-column indexes (`name` is optional; the engine names indexes itself).
/// Field attributes: `#[primary_key]` (at most one), `#[unique]`, `#[index(btree)]` and
/// `#[auto_inc]` (integer fields only). Columns are the fields, named and ordered as
/// declared.
///
/// Also generates `{Struct}Cols` (with the struct's visibility): one public field per
/// column holding an `IndexedCol` when an index starts with the column (primary key,
/// `#[unique]`, `#[index(btree)]`, first column of a multi-column index), else a `Col`.
#[proc_macro_attribute]
pub fn table(attr: TokenStream, item: TokenStream) -> TokenStream {
    table::expand(attr.into(), item.into()).into()
}

/// Stores a C-like enum (at most 256 variants, none with fields) as a `u8` tag column.
///
/// Implements `SqlEnum` and `SqlType`; the enum must also be `Clone + Copy`. A variant's
/// tag is its position in the declaration, so reordering variants changes stored data.
#[proc_macro_derive(SqlEnum)]
pub fn derive_sql_enum(input: TokenStream) -> TokenStream {
    sql_enum::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
