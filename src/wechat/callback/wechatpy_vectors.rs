//! Vectors from wechatpy, an independent implementation of the callback.
//!
//! Two kinds: vectors from wechatpy's own test suite
//! (`tests/test_crypto.py`), and vectors produced offline with wechatpy
//! 1.8.18's `WeChatCrypto(token, key, appid).encrypt_message(xml, nonce,
//! timestamp)` for this crate. They check the full safe-mode path: read the
//! envelope, verify `msg_signature`, decrypt, read the message.

use super::*;

/// The token, key and appid of wechatpy's `tests/test_crypto.py`.
const PY_TOKEN: &str = "123456";
const PY_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const PY_APPID: &str = "wx49f0ab532d5d035a";

/// Opens a safe-mode body the way a callback endpoint does.
fn open(
    token: &str,
    crypto: &MessageCrypto,
    body: &str,
    signature: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let envelope = parse_encrypted_envelope(body).unwrap();
    assert!(verify_msg_signature(
        token,
        timestamp,
        nonce,
        &envelope.encrypt,
        signature
    ));
    crypto.decrypt(&envelope.encrypt).unwrap()
}

#[test]
fn wechatpy_test_decrypt_message() {
    // tests/test_crypto.py, test_decrypt_message.
    let body = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>";
    let crypto = MessageCrypto::new(PY_KEY, PY_APPID).unwrap();
    let xml = open(
        PY_TOKEN,
        &crypto,
        body,
        "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        "1411525903",
        "461056294",
    );
    let message = parse_message(&xml).unwrap();
    assert_eq!(message.from_user_name, "messense");
    assert_eq!(message.to_user_name, "wx49f0ab532d5d035a");
    assert_eq!(message.msg_type, "text");
    assert_eq!(message.content.as_deref(), Some("test"));
    assert_eq!(message.create_time, 1411525903);
    assert_eq!(message.msg_id, Some(4363689963896700987));
    // The same vector under another appid is refused.
    let other = MessageCrypto::new(PY_KEY, "wx0000000000000000").unwrap();
    let encrypt = parse_encrypted_envelope(body).unwrap().encrypt;
    assert_eq!(
        other.decrypt(&encrypt),
        Err(CallbackError::AppIdMismatch {
            found: PY_APPID.into()
        })
    );
}

#[test]
fn wechatpy_test_encrypt_message_is_reproduced_byte_for_byte() {
    // tests/test_crypto.py, test_encrypt_message: the random prefix is
    // mocked to "1234567890123456".
    let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    let expected = "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3";
    let crypto = MessageCrypto::new(PY_KEY, PY_APPID).unwrap();
    let encrypt = crypto.encrypt_with_random(reply, *b"1234567890123456");
    assert_eq!(encrypt, expected);
    let signature = msg_signature(PY_TOKEN, "1411525903", "461056294", &encrypt);
    assert_eq!(signature, "407518b7649e86ef23978113f92d27afa9296533");
    let body = reply_envelope_xml(&encrypt, &signature, "1411525903", "461056294");
    assert_eq!(
        open(
            PY_TOKEN,
            &crypto,
            &body,
            &signature,
            "1411525903",
            "461056294"
        ),
        reply
    );
}

#[test]
fn wechatpy_test_check_signature_echostr() {
    // tests/test_crypto.py, test_check_signature_should_ok / _should_fail:
    // the echostr of a safe-mode verification is itself sealed and signed.
    let echo =
        "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==";
    let signature = "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96";
    assert!(verify_msg_signature(
        PY_TOKEN,
        "1411443780",
        "437374425",
        echo,
        signature
    ));
    assert!(!verify_msg_signature(
        PY_TOKEN,
        "1411443780",
        "437374424",
        echo,
        signature
    ));
    let crypto = MessageCrypto::new(PY_KEY, PY_APPID).unwrap();
    // What wechatpy's PrpCrypto.decrypt returns for it.
    assert_eq!(crypto.decrypt(echo).unwrap(), "5927782489442352469");
}

/// The token, key and appid of the vectors produced with wechatpy for this
/// crate. The key's last character carries non-zero trailing bits.
const TOKEN: &str = "union360-token";
const KEY: &str = "BwwRFhsgJSovNDk+Q0hNUldcYWZrcHV6f4SJjpOYnaR";
const APPID: &str = "wx3c1b5d7e9f2a4b6c";

#[test]
fn wechatpy_sealed_subscribe_opens() {
    // Produced by wechatpy's WeChatCrypto.encrypt_message (random prefix
    // "2E5BVLlMDsOWKQY0", pad 2).
    let body = reply_envelope_xml(
        "VfhT2rpI/TtRC7rP6JkKGFfPsv1RuDbt9el0GVsY0XN234MKibaBOzVccJCD7twfgV/QVGLSBCW9wmcitstSWZNS9YPmfKjYECvAdhFFAH+hPGeMKD9iSBYNU9wTEHzEOnlOONwcQpW8Hf8VyBk7XmfGQ/v8gAkA643ZhM53GXaTtNWxL4kgATLALMRyRv/Q8uPOwL2ExsYBZXwLy8vHs4fAjvgt1SM5CEQUm3YCerByU8poALaXRkMZgNtZzWC7fdduNFeaW/G6Ia99Wf4oRvhgCc5qthgHQb3Bqiu4sQgQc9r4ikHJm82s7JV7eGZD8i0pw1QExh5n2hnyEOm2z09D07iNJ726jf1Sbre5uYUH0PYdgGaB0ZYTgAXaBggg12gE+pTRcgDolt084pdeEfcwcEeci+kLbbZe6lTLYMLxpVMiitFrPjInQtrgmUTzcW2a6nnmthp2TjgZs7YALtpv5x5kRZpfsyXX5m95IQg060j5n6IfFTucr/et03T2xHTXu2DuSIJMklDUbrSspXA0ML24EDFo+pOTtSymWfhUuDV9gPBfyJsiLLW1/u0oDQAPV7CJnMPMKw9MXqJZQw==",
        "7674d6606e446dfe8df5b4a32f9dd7ab257b2519",
        "1714037059",
        "486452656",
    );
    let crypto = MessageCrypto::new(KEY, APPID).unwrap();
    let xml = open(
        TOKEN,
        &crypto,
        &body,
        "7674d6606e446dfe8df5b4a32f9dd7ab257b2519",
        "1714037059",
        "486452656",
    );
    assert_eq!(
        xml,
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><FromUserName><![CDATA[o6_bmjrPTlm6_2sgVt7hMZOPfL2M]]></FromUserName><CreateTime>1714037059</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123]]></EventKey><Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==]]></Ticket></xml>"
    );
    // Our writer produces the very body wechatpy sealed.
    assert_eq!(
        xml,
        event_xml(
            "gh_7f083739789a",
            "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
            1714037059,
            "subscribe",
            Some("qrscene_123"),
            Some(
                "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw=="
            ),
        )
    );
    // Resealed with wechatpy's random prefix, our cipher gives its bytes.
    let encrypt = parse_encrypted_envelope(&body).unwrap().encrypt;
    assert_eq!(
        crypto.encrypt_with_random(&xml, *b"2E5BVLlMDsOWKQY0"),
        encrypt
    );
}

#[test]
fn wechatpy_sealed_unicode_text_opens() {
    // Produced by wechatpy's WeChatCrypto.encrypt_message (random prefix
    // "xwhsQIPYA8EntJ2a", pad 28: above the 16 that stock PKCS#7 allows).
    let encrypt = "cC99EStTrQQpTO0rGM3f57sWCS1jkNYYQtHnuywFTpg27jWK26YPcDLsRc11GGZ2ppsfRGBE2RcjwWlq/1fiqZ2vo2MYzgLApST+XsNM6fB/9JdxSDtNla7AsiARc4rrtLhxyBfo8NHAcRRb9fhTQGuTKuTfw2ZPDSoylIFJ4q0oAuV9WHBOvSQJiZx7E68BrFVe2XyzKBNfODUb2VxMmXF8RwqKQKvr107t7OAcvGwlaz0h8I5JiCQPKEuIbUX2Py/V+edpkLpPGjFXI07ESgLd8C1KZlDiDBKpzIQhKeSrKpMuDQVgtYZBh231BBGeL2iu9y8LIMH/7f4imY7r/jHzZLqPOAc/fjthpwUIQ3T3Q5kcbSQV1NKqaN0Gts2oQZ9q3iAES+sGC77KH2Dyef56s5EEFcgEDA29h6vKXYZZSwJufOr9rXOEonlH6w7DHukHTr5JRLDkbkYLo6iZwQ==";
    let crypto = MessageCrypto::new(KEY, APPID).unwrap();
    let body = encrypted_envelope_xml("gh_7f083739789a", encrypt);
    let xml = open(
        TOKEN,
        &crypto,
        &body,
        "fd576e6e5528df66463ccc73ef8299965cab9588",
        "1714037100",
        "1391836412",
    );
    let message = parse_message(&xml).unwrap();
    assert_eq!(message.content.as_deref(), Some("你好，union360 ✓"));
    assert_eq!(message.msg_id, Some(24534187209384756));
    assert_eq!(message.dedup_key(), "msg:24534187209384756");
    assert_eq!(
        crypto.encrypt_with_random(&xml, *b"xwhsQIPYA8EntJ2a"),
        encrypt
    );
}

#[test]
fn wechatpy_fixed_prefix_reply_is_reproduced_byte_for_byte() {
    // Produced by wechatpy's WeChatCrypto.encrypt_message with its random
    // prefix fixed to "0123456789abcdef" (pad 10).
    let reply = "<xml><ToUserName><![CDATA[o6_bmjrPTlm6_2sgVt7hMZOPfL2M]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1714037200</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[success]]></Content></xml>";
    let crypto = MessageCrypto::new(KEY, APPID).unwrap();
    let encrypt = crypto.encrypt_with_random(reply, *b"0123456789abcdef");
    assert_eq!(
        encrypt,
        "jQlnCYbYarXu/VO7WdLUwzHdkc6oRCI8XbHtZKgPiuqE1XMzIzsDaunDcNVI9mKimChZ28PJ2k1ZWNtR6IgZzuxw8BejghAjmgE5CefJOGZSNVhfCvbS26v1rtLgZpWMrszmEThL+wmhlLxGVIqwswEAZYa5nLivYsoZriJ9DBV9JybTJP/Lv67Mu1fUyzD3uhUqwO//xS7tJsVA/NEQUi5V07+IPQmx/GtqO7gUSttN+v0aRZalekG9hE9zNuqUPvztjOBteYkfoHzr2Fl5Hk+o79o0PjtxPtOJ/MWn6yWVf3UdtNRfHxJZ93yHB+4ghjKbDn2VaIA3Y792DwtMDBvDVXhFeA2n/0F3114gymY5K9cwphCShG4PvBkW7Xju"
    );
    assert_eq!(
        msg_signature(TOKEN, "1714037200", "99", &encrypt),
        "8915d74411b174709aa803ecdd75c0f33a14371a"
    );
    assert_eq!(crypto.decrypt(&encrypt).unwrap(), reply);
}
