"""CI: fails, naming the part, when Playwright does not import or Debian's chromium does not launch under it with
WebAssembly on: the web export's browser tests (tests/test_export_web.py) must run, not skip."""

import sys

from kerazoo.export.web_browser import chromium_path


def main():
    try:
        from playwright.sync_api import sync_playwright
    except Exception as error:
        return f"CI: playwright does not import ({type(error).__name__}: {error})"
    if chromium_path() is None:
        return "CI: no chromium on the PATH"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path())
            page = browser.new_page()
            page.set_content("<p>ok</p>")
            wasm = page.evaluate("typeof WebAssembly.instantiate")
            version = browser.version
            browser.close()
    except Exception as error:
        return f"CI: chromium does not launch under Playwright ({type(error).__name__}: {error})"
    if wasm != "function":
        return "CI: chromium runs without WebAssembly"
    print(f"CI: Playwright launches chromium {version} (WebAssembly on)")
    return None


if __name__ == "__main__":
    sys.exit(main())
