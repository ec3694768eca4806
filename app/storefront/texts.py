"""Default wording of the snippet's forms and prompts in pl, ro and en; a shop overrides any of it in its settings."""
from __future__ import annotations

FORM_TEXTS = {
    "en": {
        "title": "Join our newsletter",
        "body": "News and offers from our shop, straight to your inbox.",
        "email_label": "Email address",
        "consent": "I agree to receive marketing emails from this shop. I can unsubscribe at any time.",
        "button": "Sign up",
        "close": "Close",
        "success": "Almost done: check your inbox and confirm your address.",
        "error": "Something went wrong. Please try again.",
        "invalid_email": "Please enter a valid email address.",
        "consent_required": "Please tick the consent box.",
    },
    "pl": {
        "title": "Zapisz się do newslettera",
        "body": "Nowości i oferty naszego sklepu prosto na Twoją skrzynkę.",
        "email_label": "Adres e-mail",
        "consent": "Wyrażam zgodę na otrzymywanie od tego sklepu wiadomości marketingowych e-mailem. Mogę ją wycofać w każdej chwili.",
        "button": "Zapisz mnie",
        "close": "Zamknij",
        "success": "Prawie gotowe: sprawdź skrzynkę i potwierdź swój adres.",
        "error": "Coś poszło nie tak. Spróbuj ponownie.",
        "invalid_email": "Podaj poprawny adres e-mail.",
        "consent_required": "Zaznacz zgodę.",
    },
    "ro": {
        "title": "Abonează-te la newsletter",
        "body": "Noutăți și oferte de la magazinul nostru, direct în inbox.",
        "email_label": "Adresă de e-mail",
        "consent": "Sunt de acord să primesc e-mailuri de marketing de la acest magazin. Mă pot dezabona oricând.",
        "button": "Abonează-mă",
        "close": "Închide",
        "success": "Aproape gata: verifică-ți e-mailul și confirmă adresa.",
        "error": "Ceva nu a mers. Încearcă din nou.",
        "invalid_email": "Introdu o adresă de e-mail validă.",
        "consent_required": "Bifează acordul.",
    },
}

PUSH_TEXTS = {
    "en": {"title": "Get notified?", "body": "We can let you know about your cart and our offers with browser notifications.",
           "allow": "Yes, notify me", "deny": "Not now"},
    "pl": {"title": "Włączyć powiadomienia?", "body": "Możemy informować Cię o Twoim koszyku i naszych ofertach powiadomieniami w przeglądarce.",
           "allow": "Tak, powiadamiaj", "deny": "Nie teraz"},
    "ro": {"title": "Activezi notificările?", "body": "Te putem anunța despre coșul tău și ofertele noastre prin notificări în browser.",
           "allow": "Da, anunță-mă", "deny": "Nu acum"},
}

CONFIRM_PAGE = {
    "en": {"confirmed": "Thank you! Your subscription is confirmed.", "invalid": "This confirmation link is not valid.",
           "expired": "This confirmation link has expired. Please sign up again."},
    "pl": {"confirmed": "Dziękujemy! Twoja subskrypcja została potwierdzona.", "invalid": "Ten link potwierdzający jest nieprawidłowy.",
           "expired": "Ten link potwierdzający wygasł. Zapisz się ponownie."},
    "ro": {"confirmed": "Mulțumim! Abonarea ta este confirmată.", "invalid": "Acest link de confirmare nu este valid.",
           "expired": "Acest link de confirmare a expirat. Abonează-te din nou."},
}


def localised(defaults: dict, overrides, locale: str) -> dict:
    """The defaults in `locale`, with the shop's wording for that locale laid over them."""
    texts = dict(defaults.get(locale) or defaults["en"])
    if isinstance(overrides, dict) and isinstance(overrides.get(locale), dict):
        texts.update({k: str(v) for k, v in overrides[locale].items() if isinstance(v, (str, int))})
    return texts
