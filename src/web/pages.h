/*
 * pages.h - HTML pages compiled into the binary (SPEC §11): plain HTML and
 * CSS, no build step, no CDN, usable without JavaScript where possible.
 * The first-run wizard replaces the setup placeholder in the web issue.
 */
#ifndef AGNES_WEB_PAGES_H
#define AGNES_WEB_PAGES_H

extern const char web_page_setup[];
extern const char web_page_login[];

#endif
