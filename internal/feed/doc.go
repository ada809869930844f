// Package feed is the visitor's side of feedd: it polls Instagram for
// connected feeds, turns the stored snapshot into the version 1 feed JSON,
// keeps ready-to-send responses in the hot cache, and serves
// GET /api/v1/feeds/{id}.
//
// Query parameters of the feed JSON:
//
//   - limit: page size, an integer from 1 to 100 (MaxLimit); default 20
//     (DefaultLimit).
//   - after: the "next" value of a previous page. It is opaque to clients
//     (base64url of the last post's timestamp and id). When that post has been
//     deleted since, the page continues at the first older post, so "load
//     more" keeps working across polls; that answer is cached under the
//     cursor of the post it continues after, never under the cursor sent. A
//     value that is not such a cursor is a 400.
//   - type: comma list (or repeated parameter) of image, video, carousel,
//     reel. "video" means every video, reels included; "reel" means reels
//     only. Posts matching any listed kind are returned.
//
// Unknown parameters are ignored; a bad value is a 400 naming the parameter.
// Equal queries share one cache entry whatever their spelling; the
// unfiltered first page is the hot one.
//
// Polling makes one Graph media call per poll in the common case (the
// account profile is re-read at most daily, and on the first poll of a feed
// whose avatar is not stored yet). Images are downloaded once per media key
// ("post:<media id>" for posts and carousel children, "avatar:<hash of the
// picture's path>"); a post whose image could not be stored is left out of
// the JSON and retried on the next poll.
//
// A poll writes only into the connection it started under (the feed's
// connection generation): when the feed was reconnected, disconnected or
// had its data deleted meanwhile, the poll writes nothing, removes the
// images it stored and polls the current connection once more. A failed
// poll, whether Instagram or feedd's own storage failed, is recorded in the
// feed's last fetch with a backoff. A feed nobody viewed within
// ViewedWindow is not polled; its first view after that starts a poll and
// is answered stale until the poll ends.
//
// The poller runs PollWorkers polls at once, at most PollsPerAccount of one
// Instagram account, taking the accounts in turn: an account whose answers
// are slow holds only its own slots, and a throttled one is refused by the
// Graph client at once. Polls stay spread over the interval: each feed's
// next poll is jittered, feeds a rate-limit block stopped come back spread
// after its end, and when more feeds are late than the workers can start
// (after a long stop) they are started spread out as they came due.
//
// The hot cache holds at most CacheMemory bytes (FEEDD_CACHE_MEMORY),
// counting each entry's document as well as its bytes, and evicts the
// least recently used entries beyond that. The default page is built from
// the database; every other page, and the HTML renderer's document, is cut
// from the feed's snapshot (all its posts, built once per change of the
// feed and kept in the cache too), so that made-up limits, filters and
// cursors cost no database read. Pages other than the default one are
// kept from their second request on: a query asked for once fills no
// memory.
package feed
