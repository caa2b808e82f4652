//! `#[table(...)]`: parses the options and field attributes, checks what can be checked
//! at compile time, and generates the `TableType` impl and the typed column handles
//! (`{Struct}Cols`, `HasCols`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Fields, Ident, Item, ItemStruct, LitStr, Meta, Token, Type};

use crate::engine_path::engine_path;

/// Collects every problem so that one build reports them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn new_at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }
}

/// The options inside `#[table(...)]`.
#[derive(Default)]
struct TableArgs {
    name: Option<LitStr>,
    /// `true` for `public`, with where it was said.
    public: Option<(bool, Span)>,
    event: Option<Span>,
    indexes: Vec<MultiIndex>,
}

/// `index(name = "...", btree(columns = [a, b]))` at struct level.
struct MultiIndex {
    /// Accepted for readability of the declaration; the engine derives index names from
    /// the table and columns, so it is not passed on.
    name: Option<LitStr>,
    columns: Vec<Ident>,
}

/// One field: a column.
struct Column {
    ident: Ident,
    /// The field name without `r#`.
    name: String,
    ty: Type,
    primary_key: Option<Span>,
    unique: Option<Span>,
    index: Option<Span>,
    auto_inc: Option<Span>,
}

/// Expands `#[table]`. On error the struct is still emitted (without our attributes) so
/// that code using it does not drown the real error in "cannot find type" noise.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.into_compile_error(),
    };
    let mut errors = Errors::default();
    let args = match parse_args(attr) {
        Ok(args) => Some(args),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let generated = match &mut item {
        Item::Struct(s) => {
            let columns = take_columns(s, &mut errors);
            // Checked even after field errors so that one build lists every problem;
            // nothing is generated unless all checks pass.
            args.and_then(|args| check_and_generate(s, &args, &columns, &mut errors))
        }
        Item::Enum(e) => {
            let (kw, ident) = (&e.enum_token, &e.ident);
            errors.push(syn::Error::new_spanned(
                quote!(#kw #ident),
                "`#[table]` applies to structs with named fields, not enums; \
                 for an enum column type use `#[derive(SqlEnum)]`",
            ));
            None
        }
        Item::Union(u) => {
            let (kw, ident) = (&u.union_token, &u.ident);
            errors.push(syn::Error::new_spanned(
                quote!(#kw #ident),
                "`#[table]` applies to structs with named fields, not unions",
            ));
            None
        }
        other => {
            errors.new_at(
                other.span(),
                "`#[table]` applies to structs with named fields",
            );
            None
        }
    };
    let errors = errors.0.map(syn::Error::into_compile_error);
    quote! {
        #item
        #generated
        #errors
    }
}

/// Parses the options inside `#[table(...)]`.
fn parse_args(attr: TokenStream) -> syn::Result<TableArgs> {
    let mut args = TableArgs::default();
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("name") {
            if args.name.is_some() {
                return Err(meta.error("`name` is given twice"));
            }
            let name: LitStr = meta.value()?.parse()?;
            if name.value().is_empty() {
                return Err(syn::Error::new(
                    name.span(),
                    "the table name cannot be empty",
                ));
            }
            args.name = Some(name);
        } else if meta.path.is_ident("public") || meta.path.is_ident("private") {
            let public = meta.path.is_ident("public");
            if args.public.is_some() {
                return Err(meta.error("give at most one of `public` and `private`"));
            }
            args.public = Some((public, span));
        } else if meta.path.is_ident("event") {
            if args.event.is_some() {
                return Err(meta.error("`event` is given twice"));
            }
            args.event = Some(span);
        } else if meta.path.is_ident("index") {
            args.indexes.push(parse_multi_index(&meta)?);
        } else {
            let path = &meta.path;
            return Err(meta.error(format!(
                "unknown table option `{}`; expected `name = \"...\"`, `public`, `private`, \
                 `event` or `index(btree(columns = [...]))`",
                quote!(#path).to_string().replace(' ', "")
            )));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(args)
}

/// Parses `index(name = "...", btree(columns = [a, b]))`.
fn parse_multi_index(meta: &ParseNestedMeta<'_>) -> syn::Result<MultiIndex> {
    let mut name: Option<LitStr> = None;
    let mut columns: Option<Vec<Ident>> = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("name") {
            if name.is_some() {
                return Err(inner.error("the index `name` is given twice"));
            }
            name = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("btree") {
            if columns.is_some() {
                return Err(inner.error("an index takes one `btree(columns = [...])`"));
            }
            let mut cols = None;
            inner.parse_nested_meta(|b| {
                if !b.path.is_ident("columns") {
                    return Err(b.error("expected `columns = [...]`"));
                }
                let value = b.value()?;
                let content;
                let bracket = syn::bracketed!(content in value);
                let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                if list.is_empty() {
                    return Err(syn::Error::new(
                        bracket.span.join(),
                        "an index needs at least one column",
                    ));
                }
                cols = Some(list.into_iter().collect());
                Ok(())
            })?;
            columns = Some(cols.ok_or_else(|| inner.error("expected `btree(columns = [...])`"))?);
        } else {
            return Err(inner.error(
                "unknown index option; expected `name = \"...\"` or `btree(columns = [...])`",
            ));
        }
        Ok(())
    })?;
    let columns = columns.ok_or_else(|| meta.error("expected `index(btree(columns = [...]))`"))?;
    Ok(MultiIndex { name, columns })
}

/// Reads each field's column attributes and removes them from the struct, which must
/// keep compiling without this macro's help.
fn take_columns(s: &mut ItemStruct, errors: &mut Errors) -> Vec<Column> {
    let Fields::Named(fields) = &mut s.fields else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    let mut primary_key: Option<String> = None;
    for field in &mut fields.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut col = Column {
            name: ident.unraw().to_string(),
            ident,
            ty: field.ty.clone(),
            primary_key: None,
            unique: None,
            index: None,
            auto_inc: None,
        };
        field.attrs.retain(|attr| {
            let path = attr.path();
            let slot = if path.is_ident("primary_key") {
                &mut col.primary_key
            } else if path.is_ident("unique") {
                &mut col.unique
            } else if path.is_ident("auto_inc") {
                &mut col.auto_inc
            } else if path.is_ident("index") {
                &mut col.index
            } else {
                // Someone else's attribute (serde, docs, ...): leave it on the field.
                return true;
            };
            let span = path.span();
            if slot.is_some() {
                errors.new_at(span, format!("`{}` is given twice", quote!(#path)));
            } else {
                match check_field_attr(attr) {
                    Ok(()) => *slot = Some(span),
                    Err(e) => errors.push(e),
                }
            }
            false
        });
        if let Some(span) = col.primary_key {
            match &primary_key {
                Some(first) => errors.new_at(
                    span,
                    format!(
                        "a table has at most one `#[primary_key]`, and `{first}` already is one"
                    ),
                ),
                None => primary_key = Some(col.name.clone()),
            }
        }
        columns.push(col);
    }
    columns
}

/// Checks the arguments of one of our field attributes.
fn check_field_attr(attr: &syn::Attribute) -> syn::Result<()> {
    if attr.path().is_ident("index") {
        let Meta::List(_) = &attr.meta else {
            return Err(syn::Error::new_spanned(
                &attr.meta,
                "write `#[index(btree)]`",
            ));
        };
        let mut btree = false;
        attr.parse_nested_meta(|m| {
            if m.path.is_ident("btree") && !btree {
                btree = true;
                Ok(())
            } else {
                Err(m.error("only btree indexes exist: write `#[index(btree)]`"))
            }
        })?;
        if !btree {
            return Err(syn::Error::new_spanned(
                &attr.meta,
                "write `#[index(btree)]`",
            ));
        }
        return Ok(());
    }
    match &attr.meta {
        Meta::Path(_) => Ok(()),
        other => {
            let path = attr.path();
            Err(syn::Error::new_spanned(
                other,
                format!("`#[{}]` takes no arguments", quote!(#path)),
            ))
        }
    }
}

/// Checks the struct as a whole and generates the impls, or records why not.
fn check_and_generate(
    s: &ItemStruct,
    args: &TableArgs,
    columns: &[Column],
    errors: &mut Errors,
) -> Option<TokenStream> {
    let ident = &s.ident;
    match &s.fields {
        Fields::Named(named) if named.named.is_empty() => errors.new_at(
            ident.span(),
            "a table needs at least one column: give the struct a field",
        ),
        Fields::Named(_) => {}
        Fields::Unnamed(fields) => errors.new_at(
            fields.span(),
            "`#[table]` needs named fields: column names are the field names",
        ),
        Fields::Unit => errors.new_at(
            ident.span(),
            "`#[table]` needs a struct with named fields: column names are the field names",
        ),
    }
    if !s.generics.params.is_empty() || s.generics.where_clause.is_some() {
        errors.new_at(
            s.generics.span(),
            "a `#[table]` struct cannot be generic: its schema must be fixed",
        );
    }
    let Some(name) = &args.name else {
        errors.new_at(
            Span::call_site(),
            "missing the table name: write `#[table(name = \"...\")]`",
        );
        return None;
    };
    let mut index_names: Vec<String> = Vec::new();
    let mut multi_indexes: Vec<Vec<String>> = Vec::new();
    for index in &args.indexes {
        if let Some(index_name) = &index.name {
            if index_names.contains(&index_name.value()) {
                errors.new_at(
                    index_name.span(),
                    format!("two indexes are named `{}`", index_name.value()),
                );
            }
            index_names.push(index_name.value());
        }
        let mut cols = Vec::new();
        for col in &index.columns {
            let col_name = col.unraw().to_string();
            if !columns.iter().any(|c| c.name == col_name) {
                errors.new_at(col.span(), format!("no field `{col_name}` in `{ident}`"));
            } else if cols.contains(&col_name) {
                errors.new_at(col.span(), format!("column `{col_name}` is listed twice"));
            }
            cols.push(col_name);
        }
        multi_indexes.push(cols);
    }
    if errors.0.is_some() {
        return None;
    }
    match engine_path() {
        Ok(krate) => Some(generate(s, name, args, columns, &multi_indexes, &krate)),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The impls for a struct that passed every check.
fn generate(
    s: &ItemStruct,
    name: &LitStr,
    args: &TableArgs,
    columns: &[Column],
    multi_indexes: &[Vec<String>],
    krate: &TokenStream,
) -> TokenStream {
    let ident = &s.ident;
    let is_event = args.event.is_some();
    let access = match args.public {
        Some((true, _)) => quote!(#krate::Access::Public),
        _ => quote!(#krate::Access::Private),
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let count = columns.len();
    // Spanned at the field's type so that a type without `SqlType` is reported there.
    let sql_types = columns.iter().map(|c| {
        let ty = &c.ty;
        quote_spanned!(ty.span()=> <#ty as #krate::typed::SqlType>::sql_type())
    });
    let into_values = columns.iter().map(|c| {
        let (ty, field) = (&c.ty, &c.ident);
        quote_spanned!(ty.span()=> <#ty as #krate::typed::SqlType>::into_value(self.#field))
    });
    let reads = columns.iter().map(|c| {
        let (ty, field, name) = (&c.ty, &c.ident, &c.name);
        quote_spanned!(ty.span()=> #field: reader.read::<#ty>(#name)?)
    });
    let primary_key = columns.iter().find(|c| c.primary_key.is_some()).map(|c| {
        let name = &c.name;
        quote!(.primary_key(#name))
    });
    let uniques = columns.iter().filter(|c| c.unique.is_some()).map(|c| {
        let name = &c.name;
        quote!(.unique(&[#name]))
    });
    // Field indexes first, then struct-level ones, each in declaration order.
    let indexes = columns
        .iter()
        .filter(|c| c.index.is_some())
        .map(|c| vec![c.name.clone()])
        .chain(multi_indexes.iter().cloned())
        .map(|cols| quote!(.index(&[#(#cols),*])));
    let auto_incs = columns.iter().filter(|c| c.auto_inc.is_some()).map(|c| {
        let name = &c.name;
        quote!(.auto_inc(#name))
    });
    // A sequence on a non-integer column would only fail when the schema is built; this
    // makes it a compile error at the field's type instead.
    let auto_inc_checks = columns.iter().filter(|c| c.auto_inc.is_some()).map(|c| {
        let ty = &c.ty;
        quote_spanned! {ty.span()=>
            const _: () = {
                fn auto_inc_column<T: #krate::typed::SqlInteger>() {}
                let _ = auto_inc_column::<#ty>;
            };
        }
    });
    let lookup = (!is_event).then(|| quote!(impl #krate::typed::CanBeLookupTable for #ident {}));
    let doc = format!("The name of table `{}`.", name.value());
    let cols = generate_cols(s, name, columns, multi_indexes, krate);

    quote! {
        impl #ident {
            #[doc = #doc]
            pub const TABLE_NAME: &'static str = #name;
        }

        impl #krate::typed::TableType for #ident {
            const NAME: &'static str = Self::TABLE_NAME;
            const IS_EVENT: bool = #is_event;

            fn schema() -> #krate::TableSchema {
                let builder = #krate::TableSchema::builder(Self::TABLE_NAME)
                    #( .column(#names, #sql_types) )*
                    #primary_key
                    #( #uniques )*
                    #( #indexes )*
                    #( #auto_incs )*
                    .access(#access)
                    .is_event(#is_event);
                match builder.build() {
                    ::core::result::Result::Ok(schema) => schema,
                    // `#[table]` checked the names at compile time; what is left is a
                    // column type the engine refuses (such as a nested Option), a bug
                    // in the declaration that no caller could handle.
                    ::core::result::Result::Err(e) => ::core::panic!("{}", e),
                }
            }

            fn into_row(self) -> #krate::Row {
                #krate::Row::new(::std::vec![ #( #into_values ),* ])
            }

            fn from_row(
                row: #krate::Row,
            ) -> ::core::result::Result<Self, #krate::typed::FromRowError> {
                let mut reader = #krate::typed::RowReader::new(Self::TABLE_NAME, row, #count)?;
                ::core::result::Result::Ok(Self { #( #reads ),* })
            }
        }

        #lookup

        #cols

        #( #auto_inc_checks )*
    }
}

/// The `{Struct}Cols` struct of typed column handles and the `HasCols` impl.
fn generate_cols(
    s: &ItemStruct,
    name: &LitStr,
    columns: &[Column],
    multi_indexes: &[Vec<String>],
    krate: &TokenStream,
) -> TokenStream {
    let (ident, vis) = (&s.ident, &s.vis);
    let cols_ident = Ident::new(&format!("{}Cols", ident.unraw()), ident.span());
    // The engine's `index_starting_with` is what a join needs, so a column counts as
    // indexed exactly when some index starts with it.
    let indexed = |c: &Column| {
        c.primary_key.is_some()
            || c.unique.is_some()
            || c.index.is_some()
            || multi_indexes
                .iter()
                .any(|cols| cols.first() == Some(&c.name))
    };
    let handle = |c: &Column| {
        if indexed(c) {
            quote!(#krate::typed::IndexedCol)
        } else {
            quote!(#krate::typed::Col)
        }
    };
    let fields = columns.iter().map(|c| {
        let (field, ty, handle) = (&c.ident, &c.ty, handle(c));
        let doc = format!("Column `{}`.", c.name);
        quote! {
            #[doc = #doc]
            pub #field: #handle<#ident, #ty>
        }
    });
    let inits = columns.iter().enumerate().map(|(i, c)| {
        let (field, handle) = (&c.ident, handle(c));
        // `TableSchemaBuilder::build` rejects more than u16::MAX columns, and no struct
        // has that many fields.
        let pos = i as u16;
        quote!(#field: #handle::new(#krate::ColId(#pos)))
    });
    let doc = format!(
        "Typed handles on the columns of table `{}`, for the query builder.",
        name.value()
    );
    quote! {
        #[doc = #doc]
        #[derive(Clone, Copy, Debug)]
        // A program names only the columns it queries; the others are not dead code.
        #[allow(dead_code)]
        #vis struct #cols_ident {
            #( #fields ),*
        }

        impl #krate::typed::HasCols for #ident {
            type Cols = #cols_ident;

            fn cols() -> #cols_ident {
                #cols_ident { #( #inits ),* }
            }
        }
    }
}
