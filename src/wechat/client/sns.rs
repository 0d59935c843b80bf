//! Sign-in: the code exchanges of web, mobile and mini-program sign-in.
//!
//! These calls are authenticated by the app secret or a user's own token,
//! not by the app's access token. A sign-in code is single-use, so the two
//! code exchanges are sent once; only `sns/userinfo` is retried.

use secrecy::ExposeSecret;

use super::{WechatClient, api, decode};
use crate::wechat::error::WechatError;
use crate::wechat::token::AppCredentials;
use crate::wechat::types::{JsCodeSession, SnsAccessToken, SnsUserInfo};

impl WechatClient {
    /// `sns/oauth2/access_token`: exchanges a web or mobile sign-in code.
    ///
    /// Not retried: a code is single-use, and a retry after a request that
    /// did reach WeChat would only earn 40163 "code been used".
    pub async fn sns_access_token(
        &self,
        app: &AppCredentials,
        code: &str,
    ) -> Result<SnsAccessToken, WechatError> {
        let secret = app.secret.expose_secret();
        let request = self.http.get(self.url(api::SNS_ACCESS_TOKEN)).query(&[
            ("appid", app.appid.as_str()),
            ("secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
        ]);
        decode(self.send(request).await?)
    }

    /// `sns/userinfo` with a user's access token from [`Self::sns_access_token`].
    pub async fn sns_userinfo(
        &self,
        user_access_token: &str,
        openid: &str,
    ) -> Result<SnsUserInfo, WechatError> {
        let value = self
            .send_retrying(api::SNS_USERINFO, || {
                self.http.get(self.url(api::SNS_USERINFO)).query(&[
                    ("access_token", user_access_token),
                    ("openid", openid),
                    ("lang", "zh_CN"),
                ])
            })
            .await?;
        decode(value)
    }

    /// `sns/jscode2session`: exchanges a mini program sign-in code.
    ///
    /// Not retried (the code is single-use). Its 45011 is a per-user limit
    /// (100 codes a minute), so it opens no per-app breaker.
    pub async fn jscode2session(
        &self,
        app: &AppCredentials,
        js_code: &str,
    ) -> Result<JsCodeSession, WechatError> {
        let secret = app.secret.expose_secret();
        let request = self.http.get(self.url(api::JSCODE2SESSION)).query(&[
            ("appid", app.appid.as_str()),
            ("secret", secret),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ]);
        decode(self.send(request).await?)
    }
}
