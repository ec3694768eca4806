<?php
/**
 * Plugin Name: Store Companion
 * Description: Loads the Store Companion storefront snippet with this shop's key, serves its web push service worker on the shop's own domain, and turns cart recovery links back into carts.
 * Version: 1.1.0
 * Requires at least: 6.3
 * Requires PHP: 7.4
 * WC requires at least: 8.0
 * License: MIT
 *
 * Settings → Store Companion: the service address (its PUBLIC_URL) and the shop's public key.
 * What it adds to the shop:
 *   - <script async src="SERVICE/s/snippet.js" data-key="KEY"> on every front-end page;
 *   - /?store_companion_sw=1 : the service worker (a stub that imports SERVICE/s/sw.js), scope "/";
 *   - /?store_companion_cart=ID:QTY,...&store_companion_issued=T&store_companion_lines=N&store_companion_sig=SIG :
 *     a cart recovery link the service signed for this shop at time T (app/storefront/cart_links.py). It empties the
 *     visitor's cart, adds those products (simple products, or variations with the options chosen) and redirects to
 *     the checkout; to the cart instead if something could not be added or the cart had more lines (N) than the
 *     link holds. A link the service did not sign for this shop key, or older than 30 days, changes nothing and
 *     lands on the cart. The service's public key for these links is fetched once from SERVICE/s/cart-link-key and
 *     kept in an option.
 */

defined( 'ABSPATH' ) || exit;

const STORE_COMPANION_OPTION = 'store_companion';

/** The saved settings, with the service address normalised (https, no trailing slash). */
function store_companion_settings() {
	$saved = get_option( STORE_COMPANION_OPTION, array() );
	$saved = is_array( $saved ) ? $saved : array();
	return array(
		'service_url' => untrailingslashit( esc_url_raw( isset( $saved['service_url'] ) ? $saved['service_url'] : '' ) ),
		'public_key'  => preg_replace( '/[^A-Za-z0-9_-]/', '', isset( $saved['public_key'] ) ? $saved['public_key'] : '' ),
	);
}

function store_companion_configured() {
	$settings = store_companion_settings();
	return '' !== $settings['service_url'] && '' !== $settings['public_key'];
}

/* --- the snippet ------------------------------------------------------------------------------------------ */

add_action(
	'wp_enqueue_scripts',
	function () {
		if ( ! store_companion_configured() ) {
			return;
		}
		$settings = store_companion_settings();
		// Loaded async so it never holds up rendering; the version is the service's (it caches by ETag).
		wp_enqueue_script( 'store-companion', $settings['service_url'] . '/s/snippet.js', array(), null, array( 'strategy' => 'async' ) );
	}
);

add_filter(
	'script_loader_tag',
	function ( $tag, $handle ) {
		if ( 'store-companion' !== $handle ) {
			return $tag;
		}
		$settings = store_companion_settings();
		$tag      = str_replace( ' src=', ' data-key="' . esc_attr( $settings['public_key'] ) . '" src=', $tag );
		if ( false === strpos( $tag, ' async' ) ) {
			$tag = str_replace( '<script ', '<script async ', $tag );
		}
		return $tag;
	},
	10,
	2
);

/* --- the service worker, on the shop's own origin ---------------------------------------------------------------- */

add_action(
	'init',
	function () {
		if ( ! isset( $_GET['store_companion_sw'] ) ) { // phpcs:ignore WordPress.Security.NonceVerification
			return;
		}
		if ( ! store_companion_configured() ) {
			status_header( 404 );
			exit;
		}
		$settings = store_companion_settings();
		nocache_headers();
		header( 'Content-Type: application/javascript; charset=utf-8' );
		header( 'Service-Worker-Allowed: /' );
		echo 'self.STORE_COMPANION=' . wp_json_encode( array( 'key' => $settings['public_key'], 'api' => $settings['service_url'] ) ) . ";\n";
		echo 'importScripts(' . wp_json_encode( $settings['service_url'] . '/s/sw.js' ) . ");\n";
		exit;
	},
	0
);

/* --- cart recovery links ------------------------------------------------------------------------------------------- */

const STORE_COMPANION_LINK_KEY_OPTION = 'store_companion_link_key';
const STORE_COMPANION_LINK_CONTEXT    = 'store-companion cart link v2';
// A link works for 30 days after the service made it (when the cart last changed): long after the last reminder,
// short enough that a link passed around does not rewrite carts for ever. Clocks may differ by a few minutes.
const STORE_COMPANION_LINK_MAX_AGE = 30 * DAY_IN_SECONDS;
const STORE_COMPANION_LINK_SKEW    = 5 * MINUTE_IN_SECONDS;
// Ed25519 sizes, spelled out: WordPress's sodium_compat fallback provides the functions on PHP builds without ext-sodium.
const STORE_COMPANION_KEY_BYTES       = 32;
const STORE_COMPANION_SIGNATURE_BYTES = 64;

/**
 * The service's public key for cart links (base64url, 32 bytes raw), fetched from SERVICE/s/cart-link-key and kept
 * in an option for the service address it came from. $refresh asks the service again (its SECRET_KEY may have
 * been rotated), at most every ten minutes so forged links cannot make the shop hammer the service.
 */
function store_companion_link_key( $refresh = false ) {
	$settings = store_companion_settings();
	$cached   = get_option( STORE_COMPANION_LINK_KEY_OPTION, array() );
	$cached   = is_array( $cached ) && isset( $cached['service_url'], $cached['key'] ) && $cached['service_url'] === $settings['service_url'] ? $cached['key'] : '';
	if ( '' !== $cached && ! $refresh ) {
		return $cached;
	}
	if ( get_transient( 'store_companion_link_key_asked' ) ) {
		return $cached;
	}
	set_transient( 'store_companion_link_key_asked', 1, 10 * MINUTE_IN_SECONDS );
	$response = wp_remote_get( $settings['service_url'] . '/s/cart-link-key', array( 'timeout' => 5 ) );
	if ( is_wp_error( $response ) || 200 !== (int) wp_remote_retrieve_response_code( $response ) ) {
		return $cached;
	}
	$body = json_decode( wp_remote_retrieve_body( $response ), true );
	if ( ! is_array( $body ) || ! isset( $body['alg'], $body['key'] ) || 'Ed25519' !== $body['alg'] || ! is_string( $body['key'] )
		|| STORE_COMPANION_KEY_BYTES !== strlen( (string) store_companion_base64url_decode( $body['key'] ) ) ) {
		return $cached;
	}
	update_option( STORE_COMPANION_LINK_KEY_OPTION, array( 'service_url' => $settings['service_url'], 'key' => $body['key'] ), false );
	return $body['key'];
}

function store_companion_base64url_decode( $text ) {
	if ( ! preg_match( '/^[A-Za-z0-9_-]*$/', $text ) ) {
		return false;
	}
	return base64_decode( strtr( $text, '-_', '+/' ) . str_repeat( '=', ( 4 - strlen( $text ) % 4 ) % 4 ), true );
}

/** Whether a link made at $issued (seconds since 1970) may still be used at $now: not too old, not from the future. */
function store_companion_link_is_current( $issued, $now ) {
	return $issued >= $now - STORE_COMPANION_LINK_MAX_AGE && $issued <= $now + STORE_COMPANION_LINK_SKEW;
}

/**
 * Whether the service signed exactly these lines, this time and this line count for this shop
 * (app/storefront/cart_links.py makes the links). $issued and $count are the digits as sent.
 */
function store_companion_link_is_signed( $lines, $issued, $count, $signature ) {
	$settings  = store_companion_settings();
	$signature = store_companion_base64url_decode( $signature );
	if ( false === $signature || STORE_COMPANION_SIGNATURE_BYTES !== strlen( $signature ) ) {
		return false;
	}
	$message = STORE_COMPANION_LINK_CONTEXT . "\n" . $settings['public_key'] . "\n" . $issued . "\n" . $count . "\n" . $lines;
	foreach ( array( false, true ) as $refresh ) {
		$key = store_companion_base64url_decode( store_companion_link_key( $refresh ) );
		if ( $key && STORE_COMPANION_KEY_BYTES === strlen( $key ) && sodium_crypto_sign_verify_detached( $signature, $message, $key ) ) {
			return true;
		}
	}
	return false;
}

/**
 * The lines of a signed link: `ID:QTY` with optional `:ATTRIBUTE=VALUE` options (percent-encoded), comma-separated.
 * Returns null when any line is malformed, so a link is restored whole or not at all.
 */
function store_companion_parse_lines( $lines ) {
	$parsed = array();
	foreach ( array_slice( explode( ',', $lines ), 0, 100 ) as $line ) {
		if ( ! preg_match( '/^([1-9][0-9]{0,19}):([1-9][0-9]{0,4})((?::[A-Za-z0-9._~%-]+=[A-Za-z0-9._~%-]*)*)$/', $line, $match ) ) {
			return null;
		}
		$options = array();
		foreach ( array_filter( explode( ':', $match[3] ) ) as $pair ) {
			list( $name, $value )              = explode( '=', $pair, 2 );
			$options[ rawurldecode( $name ) ] = rawurldecode( $value );
		}
		$parsed[] = array( 'id' => absint( $match[1] ), 'quantity' => min( 10000, absint( $match[2] ) ), 'options' => $options );
	}
	return $parsed;
}

/**
 * The attributes WC()->cart->add_to_cart() wants for a variation: the variation's own, and for its "any" options the
 * values the visitor had chosen. The Store API reports a taxonomy attribute by its term name; the cart keeps slugs.
 */
function store_companion_variation_attributes( $variation, $chosen ) {
	$attributes = $variation->get_variation_attributes();
	foreach ( $attributes as $name => $value ) {
		if ( '' !== $value || ! isset( $chosen[ $name ] ) ) {
			continue;
		}
		$value    = $chosen[ $name ];
		$taxonomy = substr( $name, strlen( 'attribute_' ) );
		if ( taxonomy_exists( $taxonomy ) ) {
			$term  = get_term_by( 'name', $value, $taxonomy );
			$value = $term ? $term->slug : sanitize_title( $value );
		}
		$attributes[ $name ] = $value;
	}
	return $attributes;
}

add_action(
	'wp_loaded',
	function () {
		// phpcs:disable WordPress.Security.NonceVerification.Recommended -- a link from an email; its signature stands in for a nonce.
		if ( ! isset( $_GET['store_companion_cart'] ) || ! function_exists( 'WC' ) || null === WC()->cart || ! store_companion_configured() ) {
			return;
		}
		// Checked as sent: sanitize_text_field() would strip the percent-encoded options the signature covers.
		$lines     = is_string( $_GET['store_companion_cart'] ) ? wp_unslash( $_GET['store_companion_cart'] ) : '';
		$issued    = isset( $_GET['store_companion_issued'] ) && is_string( $_GET['store_companion_issued'] ) ? wp_unslash( $_GET['store_companion_issued'] ) : '';
		$count     = isset( $_GET['store_companion_lines'] ) && is_string( $_GET['store_companion_lines'] ) ? wp_unslash( $_GET['store_companion_lines'] ) : '';
		$signature = isset( $_GET['store_companion_sig'] ) && is_string( $_GET['store_companion_sig'] ) ? wp_unslash( $_GET['store_companion_sig'] ) : '';
		// The cheap checks first: an expired or malformed link is refused without asking the service for its key.
		$parsed = null;
		if ( strlen( $lines ) <= 4096 && preg_match( '/^[0-9]{1,12}$/', $issued ) && preg_match( '/^[1-9][0-9]{0,4}$/', $count )
			&& store_companion_link_is_current( (int) $issued, time() )
			&& store_companion_link_is_signed( $lines, $issued, $count, $signature ) ) {
			$parsed = store_companion_parse_lines( $lines );
			$parsed = $parsed && count( $parsed ) <= (int) $count ? $parsed : null;
		}

		$restored = 0;
		if ( $parsed ) {
			if ( WC()->session && ! WC()->session->has_session() ) {
				WC()->session->set_customer_session_cookie( true ); // a guest's restored cart must outlive this request
			}
			WC()->cart->empty_cart();
			foreach ( $parsed as $line ) {
				$product = wc_get_product( $line['id'] );
				if ( ! $product || ! $product->is_purchasable() ) {
					continue; // a product gone since the cart was left is skipped, the rest is restored
				}
				if ( $product->is_type( 'variation' ) ) {
					$added = WC()->cart->add_to_cart( $product->get_parent_id(), $line['quantity'], $line['id'], store_companion_variation_attributes( $product, $line['options'] ) );
				} else {
					$added = WC()->cart->add_to_cart( $line['id'], $line['quantity'] );
				}
				$restored += $added ? 1 : 0;
			}
		}

		// Campaign parameters survive the redirect so the visit is still attributed.
		$keep = array();
		foreach ( $_GET as $key => $value ) {
			if ( is_string( $value ) && 0 === strpos( $key, 'utm_' ) ) {
				$keep[ sanitize_key( $key ) ] = rawurlencode( sanitize_text_field( wp_unslash( $value ) ) );
			}
		}
		// phpcs:enable
		// The whole cart back: straight to the checkout. Part of it (a product gone, or a cart longer than its link), or
		// a link we did not sign or that expired (its visitor's cart is left as it was): to the cart, where they see
		// what they have.
		$whole = $parsed && count( $parsed ) === $restored && count( $parsed ) === (int) $count;
		nocache_headers();
		wp_safe_redirect( add_query_arg( $keep, $whole ? wc_get_checkout_url() : wc_get_cart_url() ) );
		exit;
	},
	20
);

/* --- settings page ---------------------------------------------------------------------------------------------------- */

add_action(
	'admin_init',
	function () {
		register_setting(
			'store_companion',
			STORE_COMPANION_OPTION,
			array(
				'type'              => 'array',
				'default'           => array(),
				'sanitize_callback' => function ( $input ) {
					$input = is_array( $input ) ? $input : array();
					return array(
						'service_url' => esc_url_raw( isset( $input['service_url'] ) ? trim( $input['service_url'] ) : '', array( 'https', 'http' ) ),
						'public_key'  => preg_replace( '/[^A-Za-z0-9_-]/', '', isset( $input['public_key'] ) ? $input['public_key'] : '' ),
					);
				},
			)
		);
	}
);

add_action(
	'admin_menu',
	function () {
		add_options_page(
			'Store Companion',
			'Store Companion',
			'manage_options',
			'store-companion',
			function () {
				if ( ! current_user_can( 'manage_options' ) ) {
					return;
				}
				$settings = store_companion_settings();
				?>
				<div class="wrap">
					<h1>Store Companion</h1>
					<form method="post" action="options.php">
						<?php settings_fields( 'store_companion' ); ?>
						<table class="form-table" role="presentation">
							<tr>
								<th scope="row"><label for="store-companion-url">Service address</label></th>
								<td><input id="store-companion-url" class="regular-text" type="url" name="<?php echo esc_attr( STORE_COMPANION_OPTION ); ?>[service_url]" value="<?php echo esc_attr( $settings['service_url'] ); ?>" placeholder="https://companion.example.com"></td>
							</tr>
							<tr>
								<th scope="row"><label for="store-companion-key">Shop key</label></th>
								<td><input id="store-companion-key" class="regular-text" name="<?php echo esc_attr( STORE_COMPANION_OPTION ); ?>[public_key]" value="<?php echo esc_attr( $settings['public_key'] ); ?>"></td>
							</tr>
						</table>
						<?php submit_button(); ?>
					</form>
				</div>
				<?php
			}
		);
	}
);
