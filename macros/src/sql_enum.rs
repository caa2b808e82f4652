//! `#[derive(SqlEnum)]`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::engine_path::engine_path;

/// Tags are `u8`, so this many variants at most.
const MAX_VARIANTS: usize = 256;

/// Expands the derive, or explains why the input is not a C-like enum.
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(s) => {
            return Err(syn::Error::new(
                s.struct_token.span,
                "`SqlEnum` can only be derived for C-like enums, not structs",
            ));
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "`SqlEnum` can only be derived for C-like enums, not unions",
            ));
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            input.generics.span(),
            "`SqlEnum` cannot be derived for a generic enum: its stored type must be fixed",
        ));
    }
    if data.variants.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "`SqlEnum` needs at least one variant: an enum column with no values cannot hold a row",
        ));
    }

    // Collect every bad variant so one build reports them all.
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            push(syn::Error::new(
                variant.fields.span(),
                format!(
                    "variant `{}` has fields; `SqlEnum` variants cannot carry data",
                    variant.ident
                ),
            ));
        }
    }
    if let Some(extra) = data.variants.iter().nth(MAX_VARIANTS) {
        push(syn::Error::new(
            extra.ident.span(),
            format!(
                "`SqlEnum` supports at most {MAX_VARIANTS} variants (tags are u8); this is variant {}",
                MAX_VARIANTS + 1
            ),
        ));
    }
    if let Some(errors) = errors {
        return Err(errors);
    }

    let krate = engine_path()?;
    let ident = &input.ident;
    let name = ident.unraw().to_string();
    let variants: Vec<&syn::Ident> = data.variants.iter().map(|v| &v.ident).collect();
    let variant_names: Vec<String> = variants.iter().map(|v| v.unraw().to_string()).collect();
    // The checks above keep every position below 256.
    let tags: Vec<Literal> = (0..variants.len())
        .map(|i| Literal::u8_suffixed(u8::try_from(i).unwrap_or(u8::MAX)))
        .collect();
    // With all 256 tags taken a catch-all arm would be unreachable (and warn).
    let other_tags =
        (variants.len() < MAX_VARIANTS).then(|| quote!(_ => ::core::option::Option::None,));

    Ok(quote! {
        impl #krate::typed::SqlEnum for #ident {
            fn enum_type() -> #krate::EnumType {
                #krate::EnumType {
                    name: ::std::sync::Arc::from(#name),
                    variants: ::std::sync::Arc::from([
                        #( ::std::sync::Arc::<str>::from(#variant_names) ),*
                    ]),
                }
            }

            fn tag(self) -> u8 {
                match self {
                    #( Self::#variants => #tags, )*
                }
            }

            fn from_tag(tag: u8) -> ::core::option::Option<Self> {
                match tag {
                    #( #tags => ::core::option::Option::Some(Self::#variants), )*
                    #other_tags
                }
            }
        }

        impl #krate::typed::SqlType for #ident {
            fn sql_type() -> #krate::AlgebraicType {
                #krate::typed::enum_sql_type::<Self>()
            }

            fn into_value(self) -> #krate::Value {
                #krate::typed::enum_into_value(self)
            }

            fn from_value(
                v: #krate::Value,
            ) -> ::core::result::Result<Self, #krate::typed::ValueError> {
                #krate::typed::enum_from_value(v)
            }
        }
    })
}
