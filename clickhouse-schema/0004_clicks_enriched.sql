-- What the processors derive from each click: the place (GeoIP database or CDN header), the
-- user agent parsed (device: desktop, mobile, tablet, bot, other), where the visitor came from
-- (referrer host without `www.`; channel: direct, search, social, email, other) and the
-- campaign (the request's utm_* parameters, else the link's).
ALTER TABLE clicks
    ADD COLUMN city String AFTER country,
    ADD COLUMN browser String AFTER city,
    ADD COLUMN os String AFTER browser,
    ADD COLUMN device String AFTER os,
    ADD COLUMN referrer_host String AFTER device,
    ADD COLUMN channel String AFTER referrer_host,
    ADD COLUMN utm_source String AFTER channel,
    ADD COLUMN utm_medium String AFTER utm_source,
    ADD COLUMN utm_campaign String AFTER utm_medium,
    ADD COLUMN utm_term String AFTER utm_campaign,
    ADD COLUMN utm_content String AFTER utm_term;
