-- The client's country, from the edge's CDN header (and, once the processors resolve it, from
-- a GeoIP database); empty when unknown.
ALTER TABLE clicks ADD COLUMN country String AFTER ip;
