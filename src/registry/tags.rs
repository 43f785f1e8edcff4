//! Listing tags: `GET /v2/<name>/tags/list?n=…`, following `Link: <…>; rel="next"` pages
//! (distribution spec, "Listing Tags"), each page at most [`TAG_PAGE_LIMIT`] bytes, at most
//! [`MAX_TAG_PAGES`] pages and [`MAX_TAGS`] tags, so a hostile registry cannot make the list
//! endless.

use reqwest::header::{ACCEPT, LINK};
use reqwest::Method;
use serde::Deserialize;

use super::{Client, Error};
use crate::transport::{Call, SMALL_BODY_TIMEOUT};

/// Tags asked for per page.
pub const TAGS_PER_PAGE: usize = 1000;
/// Pages followed at most.
pub const MAX_TAG_PAGES: usize = 1000;
/// Tags listed at most.
pub const MAX_TAGS: usize = 100_000;
/// Largest tag list page read.
pub const TAG_PAGE_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of the repository, in the registry's order.
    ///
    /// # Errors
    /// Registry failures (a missing repository is a not-found error), a page that is not
    /// valid, a `Link` to another host, or more than [`MAX_TAG_PAGES`] pages.
    pub async fn list_tags(&self) -> Result<Vec<String>, Error> {
        self.list_tags_by(TAGS_PER_PAGE).await
    }

    /// [`Client::list_tags`], asking for `per_page` tags per page.
    ///
    /// # Errors
    /// As [`Client::list_tags`].
    pub async fn list_tags_by(&self, per_page: usize) -> Result<Vec<String>, Error> {
        let mut url = self.url(&format!("tags/list?n={per_page}")).await?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let (page, next) = self.tag_page(&url).await?;
            tags.extend(page);
            if tags.len() > MAX_TAGS {
                break;
            }
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        Err(Error::TooManyTags {
            repository: self.repository.to_string(),
        })
    }

    /// One page and the URL of the next, if any.
    async fn tag_page(&self, url: &str) -> Result<(Vec<String>, Option<String>), Error> {
        let call = Call::new(Method::GET, url.to_owned(), &self.scope)
            .header(ACCEPT, "application/json")
            .whole_within(SMALL_BODY_TIMEOUT);
        self.transport
            .backoff()
            .retry(|| async {
                let response = self.transport.execute(&call).await?;
                let next = next_link(&response);
                let body = self
                    .read_whole(response, TAG_PAGE_LIMIT, || Error::TagListTooLarge {
                        url: url.to_owned(),
                        limit: TAG_PAGE_LIMIT,
                    })
                    .await?;
                let page: Page = serde_json::from_slice(&body).map_err(|source| Error::TagList {
                    url: url.to_owned(),
                    source,
                })?;
                let next = match next {
                    Some(next) if same_origin(url, &next) => Some(next),
                    Some(next) => {
                        return Err(Error::ForeignLink {
                            url: url.to_owned(),
                            next,
                        })
                    }
                    None => None,
                };
                Ok((page.tags.unwrap_or_default(), next))
            })
            .await
    }
}

/// The absolute URL of a response's `rel="next"` link.
fn next_link(response: &reqwest::Response) -> Option<String> {
    response.headers().get_all(LINK).iter().find_map(|value| {
        let value = value.to_str().ok()?;
        value.split(',').find_map(|link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            is_next.then(|| response.url().join(target).ok().map(String::from))?
        })
    })
}

/// Same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin(
            "http://h:5000/v2/a/tags/list?n=1",
            "http://h:5000/v2/a/tags/list?last=x"
        ));
        assert!(!same_origin("http://h:5000/v2/", "http://h:5001/v2/"));
        assert!(!same_origin("https://h/v2/", "http://h/v2/"));
        assert!(!same_origin("https://h/v2/", "https://evil/v2/"));
    }
}
