//! `#[interface]`: a driver interface declared once.
//!
//! Applied to a trait whose methods are a driver interface's exported methods, it yields
//! everything that used to be written by hand beside it: the method table the session checks
//! calls against, the dispatch from a method name and JSON arguments to the typed method
//! (argument decoding with the texts `jumpstarter_core::Args` gives), and a typed client
//! struct whose methods make the calls. See `jumpstarter_core::interface` for the rules and
//! an example; this crate only does the token work (a proc macro, because the trait is also
//! handed to `async_trait`, which a `macro_rules!` expansion cannot feed).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, Expr, FnArg, GenericArgument, Ident, LitStr, Meta, Pat, PathArguments,
    ReturnType, Token, TraitItem, TraitItemFn, Type, parse_macro_input,
};

/// Declares a driver interface. See `jumpstarter_core::interface`.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as InterfaceArgs);
    let item = parse_macro_input!(item as syn::ItemTrait);
    match expand(args, item) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `client = Name` (optional): the typed client struct to generate.
struct InterfaceArgs {
    client: Option<Ident>,
    krate: Tokens,
}

impl Parse for InterfaceArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut out = InterfaceArgs {
            client: None,
            krate: quote!(::jumpstarter_core),
        };
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        for meta in metas {
            let nv = match meta {
                Meta::NameValue(nv) => nv,
                other => return Err(Error::new(other.span(), "expected `key = value`")),
            };
            let value = &nv.value;
            if nv.path.is_ident("client") {
                out.client = Some(syn::parse2(quote!(#value))?);
            } else if nv.path.is_ident("crate") {
                out.krate = quote!(#value);
            } else {
                return Err(Error::new(
                    nv.path.span(),
                    "unknown key (expected `client`)",
                ));
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Unary,
    Streaming,
    Stream,
}

/// One parameter as the wire sees it.
struct Param {
    ident: Ident,
    ty: Type,
    /// `None`: required. `Some(expr)`: the value when absent or null.
    default: Option<Tokens>,
    rest: bool,
    /// `#[raw]`: the argument as sent (null included), not decoded.
    raw: bool,
    /// `#[nullable]`: required, but null is decoded like any other value (not refused).
    nullable: bool,
    /// The client takes `Option<T>` for this parameter (optional ones that are not already
    /// `Option<_>` on the driver side are wrapped).
    option_type: bool,
}

struct Method {
    ident: Ident,
    client_ident: Ident,
    wire: String,
    kind: Kind,
    help: String,
    ctx: bool,
    params: Vec<Param>,
    /// `T` of `Result<T, DriverError>` (of `Items<T>` for streaming methods).
    output: Type,
    unit: bool,
}

fn expand(args: InterfaceArgs, mut item: syn::ItemTrait) -> syn::Result<Tokens> {
    let krate = &args.krate;
    let mut methods = Vec::new();
    for ti in item.items.iter_mut() {
        if let TraitItem::Fn(f) = ti {
            methods.push(method(f)?);
        }
    }
    if item.supertraits.is_empty() {
        item.colon_token = Some(Default::default());
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Send));
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Sync));
        item.supertraits.push(syn::parse_quote!('static));
    }

    let table = methods.iter().map(|m| {
        let name = &m.wire;
        let help = &m.help;
        let ctor = match m.kind {
            Kind::Unary => quote!(unary),
            Kind::Streaming => quote!(streaming),
            Kind::Stream => quote!(stream),
        };
        let params = m.params.iter().filter(|p| !p.rest).map(|p| {
            let n = p.ident.to_string();
            if p.default.is_some() {
                quote!(#krate::Param::optional(#n))
            } else {
                quote!(#krate::Param::required(#n))
            }
        });
        let variadic = m.params.iter().any(|p| p.rest).then(|| quote!(.variadic()));
        quote!(#krate::Method::#ctor(#name).params(&[#(#params),*]) #variadic .help(#help))
    });

    let decode = |m: &Method| {
        let lets = m.params.iter().map(|p| {
            let id = &p.ident;
            let ty = &p.ty;
            let n = p.ident.to_string();
            if p.rest {
                quote!(let #id: #ty = #krate::interface::rest(&mut __args, #n)?;)
            } else if p.raw {
                quote!(let #id: #ty = #krate::interface::raw(__args.next());)
            } else if let Some(d) = &p.default {
                quote!(let #id: #ty = #krate::interface::optional(__args.next(), #n, || #d)?;)
            } else if p.nullable {
                quote!(let #id: #ty = #krate::interface::nullable(__args.next(), #n)?;)
            } else {
                quote!(let #id: #ty = #krate::interface::required(__args.next(), #n)?;)
            }
        });
        quote!(#(#lets)*)
    };
    let call_args = |m: &Method| {
        let ids = m.params.iter().map(|p| &p.ident);
        let ctx = m.ctx.then(|| quote!(__ctx,));
        quote!(#ctx #(#ids),*)
    };

    let unary_arms = methods.iter().filter(|m| m.kind == Kind::Unary).map(|m| {
        let (id, wire) = (&m.ident, &m.wire);
        let lets = decode(m);
        let args = call_args(m);
        quote! {
            #wire => {
                #lets
                let __out = Self::#id(self, #args).await?;
                #krate::interface::encode(__out)
            }
        }
    });
    let streaming_arms = methods
        .iter()
        .filter(|m| m.kind == Kind::Streaming)
        .map(|m| {
            let (id, wire) = (&m.ident, &m.wire);
            let lets = decode(m);
            let args = call_args(m);
            quote! {
                #wire => {
                    #lets
                    let __items = Self::#id(self, #args)?;
                    ::core::result::Result::Ok(#krate::interface::encode_items(__items))
                }
            }
        });
    let stream_arms = methods.iter().filter(|m| m.kind == Kind::Stream).map(|m| {
        let (id, wire) = (&m.ident, &m.wire);
        quote!(#wire => Self::#id(self).await,)
    });

    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        const __METHODS: &'static [#krate::Method] = &[#(#table),*];
    });
    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        #[allow(unused_mut, unused_variables)]
        async fn __call(
            &self,
            __method: &str,
            __all: #krate::Args,
            __ctx: &#krate::CallContext,
        ) -> ::core::result::Result<#krate::Value, #krate::DriverError> {
            let mut __args = __all.0.into_iter();
            match __method {
                #(#unary_arms)*
                _ => ::core::result::Result::Err(#krate::DriverError::method_not_found(__method)),
            }
        }
    });
    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        #[allow(unused_mut, unused_variables)]
        fn __streaming(
            self: ::std::sync::Arc<Self>,
            __method: &str,
            __all: #krate::Args,
            __ctx: #krate::CallContext,
        ) -> ::core::result::Result<#krate::ValueStream, #krate::DriverError> {
            let mut __args = __all.0.into_iter();
            match __method {
                #(#streaming_arms)*
                _ => ::core::result::Result::Err(#krate::DriverError::method_not_found(__method)),
            }
        }
    });
    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        async fn __open(
            &self,
            __method: &str,
        ) -> ::core::result::Result<#krate::BoxStream, #krate::DriverError> {
            match __method {
                #(#stream_arms)*
                _ => ::core::result::Result::Err(#krate::DriverError::method_not_found(__method)),
            }
        }
    });

    let client = args
        .client
        .as_ref()
        .map(|c| client(krate, c, &item.ident, &methods));
    Ok(quote! {
        #[#krate::async_trait]
        #item
        #client
    })
}

fn client(krate: &Tokens, name: &Ident, iface: &Ident, methods: &[Method]) -> Tokens {
    let doc = format!("The typed client of [`{iface}`]: one method per exported method.");
    let fns = methods.iter().map(|m| {
        let (id, wire) = (&m.client_ident, &m.wire);
        let doc = if m.help.is_empty() {
            format!("`{wire}`")
        } else {
            m.help.clone()
        };
        let params = m.params.iter().map(|p| {
            let id = &p.ident;
            let ty = &p.ty;
            if p.default.is_some() && !p.option_type {
                quote!(#id: ::core::option::Option<#ty>)
            } else {
                quote!(#id: #ty)
            }
        });
        let pushes = m.params.iter().map(|p| {
            let id = &p.ident;
            if p.rest {
                quote!(for __v in #id { __a.push(#krate::interface::to_arg(__v)?); })
            } else if p.default.is_some() {
                quote!(#krate::interface::push_optional(&mut __a, #id)?;)
            } else {
                quote!(__a.push(#krate::interface::to_arg(#id)?);)
            }
        });
        let out = &m.output;
        let required = m.params.iter().filter(|p| p.default.is_none() && !p.rest).count();
        match m.kind {
            Kind::Unary => {
                let ret = if m.unit {
                    quote!(self.driver.call(#wire, __a).await.map(drop))
                } else {
                    quote!(#krate::interface::decode(#wire, self.driver.call(#wire, __a).await?))
                };
                quote! {
                    #[doc = #doc]
                    #[allow(unused_mut)]
                    pub async fn #id(&self, #(#params),*) -> ::core::result::Result<#out, #krate::ClientError> {
                        let mut __a: ::std::vec::Vec<#krate::Value> = ::std::vec::Vec::new();
                        #(#pushes)*
                        #krate::interface::trim_nulls(&mut __a, #required);
                        #ret
                    }
                }
            }
            Kind::Streaming => quote! {
                #[doc = #doc]
                #[allow(unused_mut)]
                pub async fn #id(&self, #(#params),*)
                    -> ::core::result::Result<#krate::interface::ClientItems<#out>, #krate::ClientError>
                {
                    let mut __a: ::std::vec::Vec<#krate::Value> = ::std::vec::Vec::new();
                    #(#pushes)*
                    #krate::interface::trim_nulls(&mut __a, #required);
                    let __items = self.driver.streaming_call(#wire, __a).await?;
                    ::core::result::Result::Ok(#krate::interface::decode_items(#wire, __items))
                }
            },
            Kind::Stream => quote! {
                #[doc = #doc]
                pub async fn #id(&self) -> ::core::result::Result<#krate::client::DriverStream, #krate::ClientError> {
                    self.driver.stream(#wire).await
                }
            },
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        pub struct #name {
            pub driver: #krate::DriverClient,
        }

        impl #name {
            pub fn new(driver: #krate::DriverClient) -> Self {
                #name { driver }
            }
            #(#fns)*
        }

        impl ::core::convert::From<#krate::DriverClient> for #name {
            fn from(driver: #krate::DriverClient) -> Self {
                #name { driver }
            }
        }
    }
}

/// Reads one trait method; strips the attributes this macro consumes.
fn method(f: &mut TraitItemFn) -> syn::Result<Method> {
    let mut kind = Kind::Unary;
    let mut wire = f.sig.ident.to_string();
    let mut client_ident = f.sig.ident.clone();
    let mut keep = Vec::new();
    for a in f.attrs.drain(..) {
        if a.path().is_ident("streaming") {
            kind = Kind::Streaming;
        } else if a.path().is_ident("stream") {
            kind = Kind::Stream;
        } else if a.path().is_ident("wire") {
            wire = lit(&a)?.value();
        } else if a.path().is_ident("client") {
            client_ident = Ident::new(&lit(&a)?.value(), a.span());
        } else {
            keep.push(a);
        }
    }
    f.attrs = keep;
    let help = help(&f.attrs);
    if f.default.is_some() {
        return Err(Error::new(
            f.sig.ident.span(),
            "interface methods have no default body",
        ));
    }
    let is_async = f.sig.asyncness.is_some();
    match (kind, is_async) {
        (Kind::Streaming, true) => {
            return Err(Error::new(
                f.sig.span(),
                "a #[streaming] method is a plain `fn(self: Arc<Self>, ..) -> Result<Items<T>, DriverError>`",
            ));
        }
        (Kind::Unary | Kind::Stream, false) => {
            return Err(Error::new(f.sig.span(), "this method must be `async fn`"));
        }
        _ => {}
    }
    let mut inputs = f.sig.inputs.iter_mut();
    match inputs.next() {
        Some(FnArg::Receiver(_)) => {}
        _ => return Err(Error::new(f.sig.span(), "the first parameter must be self")),
    }
    let mut ctx = false;
    let mut params = Vec::new();
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(pt) = input else {
            return Err(Error::new(input.span(), "unexpected receiver"));
        };
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(Error::new(pt.pat.span(), "parameters must be plain names"));
        };
        let ident = pi.ident.clone();
        if i == 0 && last_segment(&pt.ty).is_some_and(|s| s == "CallContext") {
            ctx = true;
            continue;
        }
        let mut default = None;
        let mut rest = false;
        let mut raw = false;
        let mut nullable = false;
        let mut keep = Vec::new();
        for a in pt.attrs.drain(..) {
            if a.path().is_ident("default") {
                default = Some(match &a.meta {
                    Meta::Path(_) => quote!(::core::default::Default::default()),
                    _ => {
                        let e: Expr = a.parse_args()?;
                        quote!(#e)
                    }
                });
            } else if a.path().is_ident("rest") {
                rest = true;
            } else if a.path().is_ident("raw") {
                raw = true;
            } else if a.path().is_ident("nullable") {
                nullable = true;
            } else {
                keep.push(a);
            }
        }
        pt.attrs = keep;
        if (raw || nullable) && (rest || default.is_some()) {
            return Err(Error::new(
                ident.span(),
                "#[raw] and #[nullable] are for required parameters (no #[default] or #[rest])",
            ));
        }
        let option_type = !raw && !nullable && option_inner(&pt.ty).is_some();
        if option_type && default.is_none() {
            default = Some(quote!(::core::option::Option::None));
        }
        if kind == Kind::Stream {
            return Err(Error::new(
                ident.span(),
                "#[stream] methods take no arguments",
            ));
        }
        params.push(Param {
            ident,
            ty: (*pt.ty).clone(),
            default,
            rest,
            raw,
            nullable,
            option_type,
        });
    }
    if let Some(p) = params.iter().position(|p| p.rest)
        && p + 1 != params.len()
    {
        return Err(Error::new(params[p].ident.span(), "#[rest] must come last"));
    }
    if let Some(first_optional) = params.iter().position(|p| p.default.is_some())
        && let Some(req) = params[first_optional..]
            .iter()
            .find(|p| p.default.is_none() && !p.rest)
    {
        return Err(Error::new(
            req.ident.span(),
            "a required parameter cannot follow an optional one",
        ));
    }
    let ok = ok_type(&f.sig.output).ok_or_else(|| {
        Error::new(
            f.sig.output.span(),
            "the return type must be `Result<T, DriverError>`",
        )
    })?;
    let output = match kind {
        Kind::Streaming => generic_arg(&ok).ok_or_else(|| {
            Error::new(
                ok.span(),
                "a #[streaming] method returns `Result<Items<T>, DriverError>`",
            )
        })?,
        _ => ok,
    };
    let unit = matches!(&output, Type::Tuple(t) if t.elems.is_empty());
    Ok(Method {
        ident: f.sig.ident.clone(),
        client_ident,
        wire,
        kind,
        help,
        ctx,
        params,
        output,
        unit,
    })
}

/// The string of `#[name = "..."]` or `#[name("...")]`.
fn lit(a: &Attribute) -> syn::Result<LitStr> {
    match &a.meta {
        Meta::NameValue(nv) => {
            let v = &nv.value;
            syn::parse2(quote!(#v))
        }
        _ => a.parse_args(),
    }
}

/// The first paragraph of the doc comment, on one line.
fn help(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let Meta::NameValue(nv) = &a.meta
            && let Expr::Lit(l) = &nv.value
            && let syn::Lit::Str(s) = &l.lit
        {
            let line = s.value().trim().to_owned();
            if line.is_empty() {
                if !lines.is_empty() {
                    break;
                }
                continue;
            }
            lines.push(line);
        }
    }
    lines.join(" ")
}

fn last_segment(ty: &Type) -> Option<String> {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        t => t,
    };
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn generic_arg(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let PathArguments::AngleBracketed(a) = &seg.arguments else {
        return None;
    };
    a.args.iter().find_map(|g| match g {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

fn option_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Option" {
        return None;
    }
    generic_arg(ty)
}

fn ok_type(ret: &ReturnType) -> Option<Type> {
    match ret {
        ReturnType::Type(_, ty) => {
            let Type::Path(p) = &**ty else { return None };
            if p.path.segments.last()?.ident != "Result" {
                return None;
            }
            generic_arg(ty)
        }
        ReturnType::Default => None,
    }
}
