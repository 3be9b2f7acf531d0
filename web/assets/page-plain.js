// Pages with no content of their own (the "not for you" page): just the header.
import { mountHeader } from "./app.js";

mountHeader(null).catch(() => {});
