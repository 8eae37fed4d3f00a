//! Proc macros behind `streamhost-sdk`; use them through that crate.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemFn, parse_macro_input};

/// Makes a function the plugin's message handler.
///
/// The function must have the signature
/// `fn(streamhost_sdk::Message) -> Result<(), streamhost_sdk::HandlerError>`;
/// a plugin has exactly one handler.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = TokenStream2::from(attr);
        return syn::Error::new_spanned(attr, "#[handler] takes no arguments")
            .to_compile_error()
            .into();
    }
    let item_fn = match parse_macro_input!(item as Item) {
        Item::Fn(item_fn) => item_fn,
        other => {
            return syn::Error::new_spanned(other, "#[handler] applies to a function")
                .to_compile_error()
                .into();
        }
    };
    match check_shape(&item_fn) {
        Ok(()) => expand(&item_fn).into(),
        Err(err) => {
            // Keep the function so its own body still type-checks and reports errors.
            let mut out = err.to_compile_error();
            out.extend(quote!(#item_fn));
            out.into()
        }
    }
}

/// Rejects what a type coercion would report confusingly: async, generics, variadics.
fn check_shape(item_fn: &ItemFn) -> syn::Result<()> {
    let sig = &item_fn.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "a #[handler] function cannot be async",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a #[handler] function cannot be generic",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "a #[handler] function cannot be variadic",
        ));
    }
    Ok(())
}

/// The user's function unchanged, plus a hidden module exporting it as the world's `handle`.
fn expand(item_fn: &ItemFn) -> TokenStream2 {
    let ident = &item_fn.sig.ident;
    // Spanned at the user's signature, so a wrong one is reported there.
    let checked = quote_spanned! {item_fn.sig.span()=>
        let handler: fn(::streamhost_sdk::Message)
            -> ::core::result::Result<(), ::streamhost_sdk::HandlerError> = super::#ident;
    };
    quote! {
        #item_fn

        #[doc(hidden)]
        mod __streamhost_handler {
            struct Handler;

            impl ::streamhost_sdk::__private::Guest for Handler {
                fn handle(
                    msg: ::streamhost_sdk::__private::WitMessage,
                ) -> ::core::result::Result<(), ::streamhost_sdk::__private::WitHandlerError> {
                    #checked
                    ::streamhost_sdk::__private::run(msg, handler)
                }
            }

            ::streamhost_sdk::bindings::__export_handler!(Handler);
        }
    }
}
